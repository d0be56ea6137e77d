"""Heads: score shape, gradient flow, bilinear pooling maths, multi-stage pooling."""

import math

import numpy as np
import pytest
import torch

from mixiqa.errors import ConfigError
from mixiqa.models.heads import (BilinearHead, HEADS, bilinear_pool, create_head,
                                 meanstd_pool, pool_global)


def assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a, b)


MAP = (3, 16, 4, 5)        # (B, C, h, w)
TOKENS = (3, 20, 16)       # (B, N, C)


@pytest.mark.parametrize("name, kw", [("mlp", {}), ("mlp", {"hidden": ()}),
                                      ("bilinear", {"proj_dim": 8}),
                                      ("bilinear", {"proj_dim": None}), ("sind", {})])
@pytest.mark.parametrize("shape", [MAP, TOKENS])
def test_heads_give_one_score_per_image_and_train(name, kw, shape):
    torch.manual_seed(0)
    head = create_head(name, 16, **kw)
    feats = torch.randn(*shape, requires_grad=True)
    q = head(feats)
    assert q.shape == (3,) and torch.isfinite(q).all()
    q.square().sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    for n, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_heads_are_batch_independent_in_eval():
    torch.manual_seed(0)
    feats = torch.randn(*MAP)
    for name in HEADS.names():
        head = create_head(name, 16).eval()
        assert torch.allclose(head(feats)[1:], head(feats[1:]), atol=1e-6), name


def test_mlp_head_takes_cached_vectors():
    head = create_head("mlp", 10, hidden=(4,), dropout=0.0)
    v = torch.randn(5, 10)
    assert head(v).shape == (5,)
    # a vector and a 1x1 map of the same values are the same input
    assert_close(head(v), head(v[:, :, None, None]))


def test_bilinear_pool_on_a_hand_made_tensor():
    x = torch.tensor([[[1.0, 2.0], [3.0, -4.0]]])            # (B=1, L=2, d=2)
    # X^T X / L = [[5, -5], [-5, 10]] -> signed sqrt -> divided by its L2 norm 5
    expected = torch.tensor([[math.sqrt(5), -math.sqrt(5), -math.sqrt(5), math.sqrt(10)]]) / 5
    out = bilinear_pool(x, eps=0.0)
    assert_close(out, expected)
    assert out.norm(dim=1).item() == pytest.approx(1.0)


def test_bilinear_pool_properties():
    torch.manual_seed(0)
    x = torch.randn(4, 30, 6)
    g = bilinear_pool(x)                                       # (4, 36)
    assert g.shape == (4, 36)
    assert_close(g.norm(dim=1), torch.ones(4))   # L2-normalised
    sq = g.reshape(4, 6, 6)
    assert_close(sq, sq.transpose(1, 2))         # symmetric
    gram = x.transpose(1, 2) @ x                               # sign of the raw products kept
    assert torch.equal(torch.sign(sq), torch.sign(gram))
    # invariant to the feature scale and to repeating positions (it is an average)
    assert_close(bilinear_pool(3 * x), g)
    assert_close(bilinear_pool(torch.cat([x, x], dim=1)), g)


def test_bilinear_head_sizes_follow_the_projection():
    head = create_head("bilinear", 1280)                       # default proj_dim 256
    assert head.mlp[0].in_features == 256 * 256
    assert [m.out_features for m in head.mlp if isinstance(m, torch.nn.Linear)] == [512, 64, 1]
    small = BilinearHead(8, proj_dim=None)
    assert small.mlp[0].in_features == 64
    with pytest.raises(ConfigError, match="pooled"):
        small(torch.randn(2, 8))


def test_sind_head_uses_the_embedding():
    torch.manual_seed(0)
    head = create_head("sind", 16, embed_dim=12)
    assert head.fc.in_features == 12 + 16
    tokens, emb = torch.randn(*TOKENS), torch.randn(3, 12)
    q = head(tokens, emb)
    assert q.shape == (3,)
    assert not torch.allclose(q, head(tokens, emb + 1))
    # by construction: Linear over [embedding, mean token]
    manual = head.fc(torch.cat([emb, tokens.mean(1)], dim=1)).squeeze(-1)
    assert_close(q, manual)
    with pytest.raises(ConfigError, match="embedding"):
        head(tokens)


def test_sind_head_on_cnn_maps_projects_positions():
    head = create_head("sind", 16, proj_dim=8)
    assert head.fc.in_features == 16 + 8
    feats = torch.randn(*MAP)
    pos = feats.flatten(2).transpose(1, 2)
    manual = head.fc(torch.cat([pos.mean(1), head.proj(pos).mean(1)], 1)).squeeze(-1)
    assert_close(head(feats), manual)


def test_meanstd_pool_matches_numpy():
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)
    tokens = torch.randn(2, 7, 6)
    out = meanstd_pool([a, b, tokens])
    assert out.shape == (2, 2 * (3 + 5 + 6))
    an = a.numpy().reshape(2, 3, -1)
    np.testing.assert_allclose(out[:, :3].numpy(), an.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(out[:, 3:6].numpy(), an.std(-1), rtol=1e-5)
    np.testing.assert_allclose(out[:, -6:].numpy(), tokens.numpy().std(1), rtol=1e-5)
    assert_close(pool_global(a), a.mean(dim=(2, 3)))


def test_create_head_errors_name_the_fix():
    with pytest.raises(ConfigError, match="Did you mean 'bilinear'"):
        create_head("bilinar", 16)
    with pytest.raises(ConfigError, match="no option 'hiden'.*hidden"):
        create_head("mlp", 16, hiden=(8,))
    with pytest.raises(ConfigError, match="positive int"):
        create_head("mlp", 0)
    with pytest.raises(ConfigError, match=r"\(B, C, h, w\)"):
        create_head("mlp", 16)(torch.randn(16))
