"""Re-IQA quality-aware pretraining: views, MoCo pieces, a tiny run, resume, config, CLI."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from scipy import ndimage

from mixiqa.errors import ConfigError, DataError
from mixiqa.models.backbones import create_backbone
from mixiqa.pretrain import add_pretrain_command, pretrain
from mixiqa.pretrain.config import PretrainConfig, load_pretrain_config
from mixiqa.pretrain.data import (find_images, make_versions, make_views, overlap_fraction,
                                  overlapping_boxes)
from mixiqa.pretrain.moco import MoCo, ProjectedEncoder, info_nce


def smooth_image(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """(size, size, 3) float32 in [0, 1] with structure at several scales."""
    x = ndimage.gaussian_filter(rng.random((size, size, 3)), sigma=(3, 3, 0))
    x = (x - x.min()) / (x.max() - x.min())
    return (0.7 * x + 0.3 * np.linspace(0, 1, size)[None, :, None]).astype(np.float32)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for i in range(8):  # nested folders and mixed suffixes: the search is recursive
        folder = root / ("a" if i < 4 else "b/c")
        folder.mkdir(parents=True, exist_ok=True)
        arr = (smooth_image(rng) * 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.{'png' if i % 2 else 'JPG'}")
    (root / "scores.csv").write_text("not an image\n")
    return root


def tiny(**kw) -> PretrainConfig:
    base = dict(crop=64, batch_images=2, versions=2, queue=16, steps=3, workers=0,
                checkpoint_every=2, warmup_steps=1, proj_hidden=32, proj_dim=16, device="cpu")
    return PretrainConfig(**{**base, **kw})


# ---- views --------------------------------------------------------------------------

@pytest.mark.parametrize("h,w,crop", [(300, 400, 160), (250, 250, 160), (96, 130, 64)])
def test_overlapping_boxes_share_the_asked_fraction(h, w, crop):
    rng = np.random.default_rng(1)
    least = max(1, 2 * crop - w) * max(1, 2 * crop - h) / crop**2
    for _ in range(200):
        a, b = overlapping_boxes(h, w, crop, rng, (0.1, 0.3))
        for top, left in (a, b):
            assert 0 <= top <= h - crop and 0 <= left <= w - crop
        frac = overlap_fraction(a, b, crop)
        # rounding to whole pixels moves the fraction by at most ~2 pixel rows
        assert max(0.1, least) - 0.03 <= frac <= max(0.3, least) + 0.03
        assert a != b  # never the same crop twice


def test_views_pair_overlapping_crops_of_one_version(one_thread):
    img = smooth_image(np.random.default_rng(2))
    cfg = PretrainConfig(crop=40, versions=4, scales=(1.0, 0.5), compose_prob=0.5)
    v = make_views(img, np.random.default_rng(3), cfg)
    assert v.crops.shape == (8, 2, 3, 40, 40)                     # 4 versions x 2 scales
    assert v.scales == [1.0, 0.5] * 4 and v.labels[0] == [] and v.labels[1] == []
    for (a, b), crops in zip(v.boxes, v.crops):                     # the shared area is identical
        assert overlap_fraction(a, b, 40) > 0
        (t1, l1), (t2, l2) = a, b
        top, left = max(t1, t2), max(l1, l2)
        h, w = 40 - abs(t1 - t2), 40 - abs(l1 - l2)
        torch.testing.assert_close(crops[0][:, top - t1:top - t1 + h, left - l1:left - l1 + w],
                                   crops[1][:, top - t2:top - t2 + h, left - l2:left - l2 + w])
    (t, l), _ = v.boxes[0]                                          # pristine, full scale
    expect = torch.from_numpy(img[t:t + 40, l:l + 40]).permute(2, 0, 1)   # (3, 40, 40)
    torch.testing.assert_close(v.crops[0, 0], expect)
    firsts = [labels[0][0] for labels in v.labels[2::2]]            # distorted versions
    assert len(set(firsts)) == 3, "distorted versions use distinct distortion types"


def test_versions_differ_from_each_other_and_from_the_pristine_image():
    img = smooth_image(np.random.default_rng(4), 64)
    versions = make_versions(img, np.random.default_rng(5), 6, compose_prob=1.0)
    assert versions[0][0] is img and versions[0][1] == []
    assert all(len(steps) == 2 and steps[0][0] != steps[1][0] for _, steps in versions[1:])
    for i in range(6):
        for j in range(i):
            assert np.abs(versions[i][0] - versions[j][0]).mean() > 1e-3, (i, j)


def test_find_images_is_recursive_and_names_a_missing_folder(images, tmp_path):
    assert len(find_images(images)) == 8
    with pytest.raises(DataError, match="not found"):
        find_images(tmp_path / "nope")
    with pytest.raises(DataError, match="No image files"):
        find_images(tmp_path)


# ---- MoCo pieces --------------------------------------------------------------------------

def test_info_nce_rewards_matching_keys_and_counts_batch_and_queue():
    q = torch.eye(4)
    empty = torch.zeros(0, 4)
    assert info_nce(q, q, empty, 0.2) < info_nce(q, q.roll(1, 0), empty, 0.2)
    # value: q.k+ = 1, every other logit 0 (3 batch keys + 5 queue keys)
    expect = -torch.log(torch.exp(torch.tensor(5.0)) / (torch.exp(torch.tensor(5.0)) + 8))
    torch.testing.assert_close(info_nce(q, q, torch.zeros(5, 4), 0.2), expect)


def test_queue_is_a_ring_buffer():
    enc = ProjectedEncoder(create_backbone("efficientnet_lite0", weights="none"), 8, 4)
    moco = MoCo(enc, queue_size=5, momentum=0.9, temperature=0.2)
    moco.enqueue(torch.ones(3, 4))
    moco.enqueue(2 * torch.ones(3, 4))
    assert moco.queue_ptr.item() == 1
    assert moco.queue[:, 0].tolist() == [2, 1, 1, 2, 2]


# ---- runs -------------------------------------------------------------------------------

def test_tiny_pretraining_runs_via_the_cli_and_the_encoder_loads(images, tmp_path, one_thread):
    cfg_file = tmp_path / "p.yaml"
    tiny().save(cfg_file)
    parser = argparse.ArgumentParser()
    add_pretrain_command(parser.add_subparsers())
    args = parser.parse_args(["pretrain", str(cfg_file), "--images", str(images),
                              "--out", str(tmp_path / "run"), "--set", "queue=16"])
    assert args.func(args) == 0
    info = json.loads((tmp_path / "run" / "pretrain.json").read_text())
    assert info["steps"] == 3 and info["finished"] and info["images"] == 8
    assert len(info["loss"]) == 3 and all(np.isfinite(info["loss"]))
    assert info["views_per_step"] == 2 * 2 * 2
    path = tmp_path / "run" / "encoder.safetensors"
    trained = create_backbone("efficientnet_lite0", weights=str(path))
    start = create_backbone("efficientnet_lite0", weights="offline")
    moved = [k for k, v in trained.model.state_dict().items()
             if not torch.equal(v, start.model.state_dict()[k])]
    assert moved, "three SGD steps change the encoder's weights"
    assert trained.weights_id.startswith("efficientnet_lite0:sha256-")
    with pytest.raises(ConfigError, match="--resume"):  # never overwrite a run silently
        pretrain(tiny(), images, tmp_path / "run", log=lambda *a: None)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(images, tmp_path, one_thread):
    cfg = tiny(steps=4)
    full = pretrain(cfg, images, tmp_path / "full", log=lambda *a: None)
    part = pretrain(cfg, images, tmp_path / "part", stop_at=2, log=lambda *a: None)
    assert part["step"] == 2 and not (tmp_path / "part" / "encoder.safetensors").exists()
    with pytest.raises(ConfigError, match="changed config"):
        pretrain(tiny(steps=4, lr=0.5), images, tmp_path / "part", resume=True)
    done = pretrain(cfg, images, tmp_path / "part", resume=True, log=lambda *a: None)
    assert done["losses"] == full["losses"] and done["step"] == 4
    a = load_file(str(tmp_path / "full" / "encoder.safetensors"))
    b = load_file(str(tmp_path / "part" / "encoder.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- config ------------------------------------------------------------------------------

def test_config_file_overrides_and_errors(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("crop: 128\nsteps: 10\nscales: [1.0, 0.5]\n")
    cfg = load_pretrain_config(path, ["steps=20", "temperature=0.1"])
    assert (cfg.crop, cfg.steps, cfg.temperature, cfg.scales) == (128, 20, 0.1, (1.0, 0.5))
    with pytest.raises(ConfigError, match="did you mean 'temperature'"):
        load_pretrain_config(path, ["temprature=0.1"])
    with pytest.raises(ConfigError, match="overlap"):
        load_pretrain_config(path, ["overlap=[0.5, 0.2]"])
    with pytest.raises(ConfigError, match="not found"):
        load_pretrain_config(tmp_path / "missing.yaml")


def test_shipped_config_loads():
    from pathlib import Path

    cfg = load_pretrain_config(Path(__file__).parents[1] / "configs" / "reiqa_pretrain.yaml")
    assert cfg.backbone == "efficientnet_lite0" and cfg.momentum == 0.999
    assert cfg.temperature == 0.2 and cfg.scales == (1.0, 0.5)
