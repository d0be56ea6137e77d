"""The frozen-feature cache: hits, content keys, atomic entries, damaged entries recomputed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mixiqa.features import ExtractStats, FeatureCache, FeatureSpec, extract_features


class TinyBackbone(nn.Module):
    """The backbone contract in miniature: two conv stages, counted forward passes."""

    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, weights_id: str = "tiny-v1"):
        super().__init__()
        torch.manual_seed(0)
        self.s1 = nn.Conv2d(3, 4, 3, stride=2)
        self.s2 = nn.Conv2d(4, 6, 3, stride=2)
        self.weights_id = weights_id
        self.num_features = 6
        self.calls = 0

    def forward_stages(self, x):
        self.calls += 1
        a = torch.relu(self.s1(x))
        return [a, torch.relu(self.s2(a))]

    def forward_features(self, x):
        return self.forward_stages(x)[-1]


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        p = tmp_path / f"im{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    return paths


def spec(**kw):
    return FeatureSpec(**{"backbone": "tiny", "crop": 32, "scales": (1.0, 0.5),
                          "pooling": "meanstd", **kw})


def test_second_run_hits_cache_without_forward(images, tmp_path):
    bb = TinyBackbone()
    a = extract_features(images, bb, spec(), tmp_path / "c", batch_size=2, workers=0)
    assert a.shape == (5, 2 * 2 * (4 + 6)) and bb.calls > 0
    bb.calls = 0
    stats = ExtractStats()
    b = extract_features(images, bb, spec(), tmp_path / "c", workers=0, stats=stats)
    assert bb.calls == 0 and stats.cached == 5 and stats.computed == 0
    np.testing.assert_array_equal(a, b)


def test_changed_image_or_backbone_is_not_stale(images, tmp_path):
    bb = TinyBackbone()
    a = extract_features(images, bb, spec(), tmp_path / "c", workers=0)
    Image.new("RGB", (40, 48), (255, 0, 0)).save(images[0])  # same name, new content
    b = extract_features(images, bb, spec(), tmp_path / "c", workers=0)
    assert not np.allclose(a[0], b[0]) and np.allclose(a[1:], b[1:])
    other = TinyBackbone("tiny-v2")
    with torch.no_grad():
        other.s2.weight.mul_(2)
    c = extract_features(images, other, spec(), tmp_path / "c", workers=0)
    assert not np.allclose(b, c)
    assert spec().key("x") != spec(pooling="avg").key("x") != spec(crop=16).key("x")


def test_damaged_entry_is_recomputed_with_warning(images, tmp_path):
    bb = TinyBackbone()
    a = extract_features(images, bb, spec(), tmp_path / "c", workers=0)
    cache = FeatureCache(spec(), bb.weights_id, tmp_path / "c")
    entries = sorted(cache.folder.rglob("*.safetensors"))
    raw = bytearray(entries[0].read_bytes())
    raw[-3] ^= 0xFF                       # flip bits inside the data: checksum catches it
    entries[0].write_bytes(bytes(raw))
    entries[1].write_bytes(entries[1].read_bytes()[:20])   # truncated, as a crash leaves it
    bb.calls = 0
    with pytest.warns(UserWarning, match="damaged"):
        b = extract_features(images, bb, spec(), tmp_path / "c", workers=0)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert bb.calls > 0


def test_no_temporary_files_left(images, tmp_path):
    extract_features(images, TinyBackbone(), spec(), tmp_path / "c", workers=0)
    assert not list((tmp_path / "c").rglob("*.tmp*"))


def test_native_resolution_mixes_image_sizes(tmp_path):
    """No crop: images keep their own sizes; each gets the features it would get alone."""
    rng = np.random.default_rng(1)
    paths = []
    for i, (h, w) in enumerate([(40, 48), (56, 40), (40, 48), (64, 64)]):
        p = tmp_path / f"n{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    bb = TinyBackbone()
    together = extract_features(paths, bb, spec(crop=None), tmp_path / "a", batch_size=4,
                                workers=0)
    alone = np.concatenate([extract_features([p], bb, spec(crop=None), tmp_path / "b",
                                             workers=0) for p in paths])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    assert not np.allclose(together[0], together[1])


def test_meanstd_plus_avg_is_both_poolings_from_one_pass():
    from mixiqa.features import pool_features
    from mixiqa.models.backbones import create_backbone

    bb = create_backbone("efficientnet_lite0", weights="offline").eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.inference_mode():
        both = pool_features(bb, x, "meanstd+avg")
        parts = torch.cat([pool_features(bb, x, "meanstd"), pool_features(bb, x, "avg")], 1)
    assert both.shape == (2, 2 * sum(bb.stage_channels) + bb.num_features)
    torch.testing.assert_close(both, parts, rtol=1e-4, atol=1e-5)
