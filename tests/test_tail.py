"""Partial fine-tuning (``model.train_tail``): cached rows, the tail on them, the model file."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from helpers import make_set
from mixiqa.config import config_from_dict
from mixiqa.errors import ConfigError
from mixiqa.experiment import run_experiment
from mixiqa.features import FeatureSpec, compute_features
from mixiqa.models.backbones import create_backbone
from mixiqa.models.iqa import load_model, save_model
from mixiqa.models import tail as tail_module
from mixiqa.models.tail import Tail, crop_maps, tail_layout, tail_rows


@pytest.fixture(scope="module")
def lite0():
    return create_backbone("efficientnet_lite0").eval()


def n_blocks(backbone) -> int:
    """How many blocks the backbone has (timm's Lite0: blocks.0 .. blocks.6)."""
    return len(backbone.model.blocks)


@pytest.mark.parametrize("k", [1, 3])
def test_tail_on_cached_rows_gives_the_pooled_features(lite0, k):
    spec = FeatureSpec(crop=None, max_short=128, scales=(1.0, 0.5), pooling="meanstd", tail=k)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    rows = tail_rows(lite0, x, spec).clone()   # a cached row, read back as a plain tensor
    tail = Tail(lite0, spec)
    assert rows.shape == (2, tail.row_dim)
    with torch.no_grad():
        got = tail(rows)
    want = compute_features(lite0, x, replace(spec, tail=0))
    assert got.shape == want.shape == (2, tail.out_features)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # only the tail's blocks are parameters, under the backbone's own names
    names = {n.split(".")[2] for n, _ in tail.named_parameters()}
    n = n_blocks(lite0)
    assert n == 7 and names == {str(i) for i in range(n - k, n)}


def _mirrored(tail: Tail, rows: torch.Tensor) -> torch.Tensor:
    """The rows with every scale's map flipped left-right, by the layout."""
    parts, at = [], 0
    for d, c, h, w in tail.layout:
        parts.append(rows[:, at:at + d])
        parts.append(rows[:, at + d:at + d + c * h * w].reshape(-1, c, h, w).flip(-1).flatten(1))
        at += d + c * h * w
    return torch.cat(parts, 1)


def test_tail_flip_mirrors_maps_only_in_training(lite0):
    spec = FeatureSpec(crop=None, max_short=64, scales=(1.0, 0.5), pooling="meanstd", tail=1)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    row = tail_rows(lite0, x, spec).clone()
    tail = Tail(lite0, spec, flip=True)
    with torch.no_grad():
        plain, mirrored = tail(row), tail(_mirrored(tail, row))
        assert not torch.allclose(plain, mirrored)          # the flip changes the features
        torch.manual_seed(0)
        tail.train()
        assert not any(m.training for m in tail.modules())   # BatchNorm stays frozen
        got = tail(row.expand(16, -1))
        tail.eval()
        torch.testing.assert_close(tail(row), plain)         # evaluation never flips
    is_plain = [torch.allclose(g, plain[0], atol=1e-4) for g in got]
    is_mirrored = [torch.allclose(g, mirrored[0], atol=1e-4) for g in got]
    assert all(a != b for a, b in zip(is_plain, is_mirrored))   # each row one or the other
    assert 0 < sum(is_mirrored) < 16                            # both happen


def test_crop_maps_takes_each_rows_window_at_its_corner():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    corner = torch.tensor([[0.0, 0.999], [0.5, 0.0]])
    got = crop_maps(x, corner, 0.75)                       # 6 x 6 windows; 3 positions a side
    assert got.shape == (2, 3, 6, 6)
    torch.testing.assert_close(got[0], x[0, :, 0:6, 2:8])   # top, right edge
    torch.testing.assert_close(got[1], x[1, :, 1:7, 0:6])   # middle row, left edge
    torch.testing.assert_close(crop_maps(x, corner, 1.0), x)


def test_tail_crop_crops_maps_only_in_training(lite0):
    spec = FeatureSpec(crop=None, max_short=128, scales=(1.0, 0.5), pooling="meanstd", tail=1)
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    row = tail_rows(lite0, x, spec).clone()
    tail = Tail(lite0, spec, crop=0.5)
    with torch.no_grad():
        plain = tail(row)
        torch.manual_seed(0)
        tail.train()
        got = tail(row.expand(8, -1))
        tail.eval()
        torch.testing.assert_close(tail(row), plain)          # evaluation never crops
    d = plain.shape[1] // 2 - 320 * 2                          # full scale: the fixed stages
    # the fixed stages' cached statistics are kept; the trained block's change per window
    torch.testing.assert_close(got[:, :d], plain[:, :d].expand(8, -1))
    assert not torch.allclose(got[:, d:d + 640], plain[:, d:d + 640].expand(8, -1), atol=1e-3)
    assert len({tuple(g[d:d + 4].tolist()) for g in got}) > 1  # windows differ between rows


def test_an_image_of_another_size_still_makes_a_row_of_the_same_length(lite0):
    spec = FeatureSpec(crop=None, max_short=128, scales=(1.0, 0.5), pooling="meanstd", tail=1)
    rows = [tail_rows(lite0, torch.randn(1, 3, h, w), spec) for h, w in ((128, 128), (96, 160))]
    assert rows[0].shape == rows[1].shape


def test_tail_needs_a_block_backbone_and_a_sensible_count(lite0):
    with pytest.raises(ConfigError, match="EfficientNet-style"):
        tail_layout(create_backbone("resnet18", weights="none"), 1)
    with pytest.raises(ConfigError, match="between 1 and 6"):
        tail_layout(lite0, 7)


def _config(root, sets, **model) -> dict:
    return {
        "name": "t", "datasets": sets,
        "split": {"protocol": "random", "ratios": [0.6, 0.2, 0.2], "seeds": [0]},
        "model": {"backbone": "efficientnet_lite0", "weights": "offline", "freeze": True,
                  "pooling": "meanstd", "scales": [1.0], "feature_crop": 64,
                  "head_kwargs": {"hidden": [16]}, "train_tail": 1, **model},
        "method": {"name": "sind"},
        "train": {"epochs": 2, "batch_size": 8, "lr": 0.003, "backbone_lr_mult": 1.0,
                  "workers": 0, "cache_dir": str(root / "cache")}}


def test_config_refuses_a_tail_without_a_frozen_meanstd_recipe(tmp_path):
    for change in ({"train_tail": -1}, {"freeze": False}, {"pooling": "avg"},
                   {"train_tail": 0, "tail_flip": True}):
        with pytest.raises(ConfigError, match="train_tail"):
            config_from_dict(_config(tmp_path, [{"name": "csv", "root": "x"}], **change))
    with pytest.raises(ConfigError, match="tail_flip must be true or false"):
        config_from_dict(_config(tmp_path, [{"name": "csv", "root": "x"}], tail_flip="yes"))
    for bad in (0, 1.5, "half", True):
        with pytest.raises(ConfigError, match="tail_crop must be a fraction"):
            config_from_dict(_config(tmp_path, [{"name": "csv", "root": "x"}], tail_crop=bad))
    with pytest.raises(ConfigError, match="tail_crop crops the cached maps"):
        config_from_dict(_config(tmp_path, [{"name": "csv", "root": "x"}], train_tail=0,
                                 tail_crop=0.75))


@pytest.mark.parametrize("cpu_amp, tail, decay", [(False, 1, 1.0), (True, 1, 1.0),
                                                  (False, 2, 0.3)])
def test_trained_tail_is_saved_into_the_backbone_and_scores_as_trained(tmp_path, monkeypatch,
                                                                         cpu_amp, tail, decay):
    # the dtype of every map the trained block pools: bf16 in training under train.cpu_amp
    seen, pool = set(), tail_module.stage_stats
    monkeypatch.setattr(tail_module, "stage_stats", lambda x: seen.add(x.dtype) or pool(x))
    sets = [make_set(tmp_path, "alpha", 30, lambda q: 1 + 4 * q, 0)]
    cfg = _config(tmp_path, sets, train_tail=tail)
    cfg["train"].update(cpu_amp=cpu_amp, layer_decay=decay)
    run_experiment(config_from_dict(cfg), tmp_path / "run", log=lambda *a: None)
    assert seen == ({torch.float32, torch.bfloat16} if cpu_amp else {torch.float32})
    folder = tmp_path / "run" / "split_00" / "model"
    meta = json.loads((folder / "model.json").read_text())
    net = create_backbone("efficientnet_lite0")
    pretrained, n = net.state_dict(), n_blocks(net)
    blocks = list(range(n - tail, n))     # the last `tail` of Lite0's blocks trained
    assert meta["backbone"]["tail_blocks"] == blocks and meta["features"]["tail"] == 0
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    backbone_keys = [k for k in stored if k.startswith("backbone.")]
    of_block = {b: [k for k in backbone_keys if k.startswith(f"backbone.model.blocks.{b}.")]
                for b in blocks}
    assert all(of_block.values()) and sum(map(len, of_block.values())) == len(backbone_keys)
    for b, keys in of_block.items():
        assert any(not torch.equal(stored[k], pretrained[k[len("backbone."):]])
                   for k in keys), f"blocks.{b} did not train"
    # scoring images runs the whole backbone with the trained block: the q of training's rows
    model = load_model(folder)
    assert model.backbone.weights_id.startswith(pretrained_id := create_backbone(
        "efficientnet_lite0").weights_id) and model.backbone.weights_id != pretrained_id
    preds = list(csv.DictReader(open(tmp_path / "run" / "split_00" / "predictions.csv")))
    scored = model.score([r["path"] for r in preds])
    assert scored == pytest.approx([float(r["q"]) for r in preds], rel=1e-4, abs=1e-4)
    # without its backbone the trained block is not in memory: re-saving must refuse
    with pytest.raises(ConfigError, match="trained backbone blocks"):
        save_model(load_model(folder, with_backbone=False), tmp_path / "resaved")
    save_model(model, tmp_path / "resaved")
    assert load_model(tmp_path / "resaved").score(preds[0]["path"]) == pytest.approx(
        scored[:1], rel=1e-5)


def test_cpu_amp_is_bf16_on_a_cpu_and_warns_without_native_support(monkeypatch):
    from mixiqa import optim

    cfg = config_from_dict(_config(Path("."), [{"name": "csv", "root": "x"}]))
    assert optim.amp_setup(cfg, "cpu")[0] is None          # off by default
    cfg.train.cpu_amp = True
    monkeypatch.setattr(optim, "_cpu_has_native_bf16", lambda: True)
    dtype, scaler = optim.amp_setup(cfg, "cpu")
    assert dtype is torch.bfloat16 and not scaler.is_enabled()
    monkeypatch.setattr(optim, "_cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16"):
        assert optim.amp_setup(cfg, "cpu")[0] is torch.bfloat16


def test_layer_decay_gives_earlier_blocks_smaller_rates(lite0):
    from mixiqa.optim import backbone_groups

    spec = FeatureSpec(crop=None, max_short=64, scales=(1.0,), pooling="meanstd", tail=3)
    tail = Tail(lite0, spec)
    block_of = {id(p): int(n.split(".")[2]) for n, p in tail.named_parameters()}
    assert [len(g["params"]) for g in backbone_groups(tail, 0.01, 1.0)] == [len(block_of)]
    groups = backbone_groups(tail, 0.01, 0.5)
    assert [g["lr"] for g in groups] == pytest.approx([0.01, 0.005, 0.0025])
    assert [{block_of[id(p)] for p in g["params"]} for g in groups] == [{6}, {5}, {4}]
    # a whole trainable backbone: the stem one step below blocks.0, the head conv at the top
    whole = create_backbone("efficientnet_lite0", weights="none")
    top, *_, bottom = backbone_groups(whole, 1.0, 0.5)
    names = {id(p): n for n, p in whole.named_parameters()}
    assert any("conv_head" in names[id(p)] for p in top["params"])
    assert {names[id(p)].split(".")[1] for p in bottom["params"]} == {"conv_stem", "bn1"}
    assert bottom["lr"] == pytest.approx(0.5 ** n_blocks(whole))
    with pytest.raises(ConfigError, match="layer_decay"):
        backbone_groups(create_backbone("resnet18", weights="none"), 1.0, 0.5)


def test_config_refuses_a_layer_decay_outside_zero_to_one(tmp_path):
    for bad in (0, 1.5, "fast", True):
        cfg = _config(tmp_path, [{"name": "csv", "root": "x"}])
        cfg["train"]["layer_decay"] = bad
        with pytest.raises(ConfigError, match="layer_decay"):
            config_from_dict(cfg)


def test_config_refuses_a_layer_decay_on_a_frozen_backbone(tmp_path):
    cfg = _config(tmp_path, [{"name": "csv", "root": "x"}], train_tail=0)
    cfg["train"]["layer_decay"] = 0.5
    with pytest.raises(ConfigError, match="frozen"):
        config_from_dict(cfg)
    cfg["model"]["train_tail"] = 2          # blocks that train: the decay has something to scale
    assert config_from_dict(cfg).train.layer_decay == 0.5
