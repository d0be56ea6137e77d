"""The model shipped in the package: it is what its recipe config says, and it loads and scores.

These read the committed files only; the model is rebuilt by hand (configs/default_model.yaml,
then benchmarks/ship_default_model.py), so a rebuild that forgets to ship, or ships another
recipe than the config names, fails here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from scipy.stats import spearmanr

import mixiqa
from mixiqa.config import load_config
from mixiqa.data.datasets import load_manifest
from mixiqa.models.backbones import create_backbone
from mixiqa.models.iqa import default_model_path, read_meta

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default_model.yaml"


def test_shipped_model_is_its_recipe():
    cfg, meta = load_config(CONFIG), read_meta(default_model_path())
    assert meta["method"] == cfg.method.name
    assert meta["backbone"]["name"] == cfg.model.backbone
    assert meta["backbone"]["weights"] == "offline"           # loads without the internet
    # the last train_tail blocks are the trained ones, stored over the package's weights
    n = len(create_backbone(cfg.model.backbone, weights="none").model.blocks)   # Lite0: 7
    tail = list(range(n - cfg.model.train_tail, n))
    assert meta["backbone"]["tail_blocks"] == tail
    assert meta["head"]["name"] == cfg.model.head
    assert meta["head"]["kwargs"] == cfg.model.head_kwargs
    feats = meta["features"]
    assert (feats["pooling"], feats["scales"], feats["max_short"]) == (
        cfg.model.pooling, list(cfg.model.scales), cfg.model.feature_max_short)
    assert sorted(meta["mappers"]) == sorted(d.name for d in cfg.datasets)
    assert meta["output"] == {"scale": "clive", "clip": [0.0, 100.0]}    # the README's scale


def test_shipped_model_file_holds_its_trained_blocks():
    meta = read_meta(default_model_path())
    with safe_open(str(default_model_path() / "model.safetensors"), "pt") as f:
        blocks = {int(k.split(".")[3]) for k in f.keys() if k.startswith("backbone.model.blocks.")}
    assert blocks == set(meta["backbone"]["tail_blocks"])   # no more (the rest is packaged)


@pytest.mark.shared_data
def test_shipped_model_ranks_clive(shared_data):
    """Loaded with no path, it scores real photos on 0-100 in MOS order. It has seen these
    images in training, so this checks that the files load right (a lost trained block or a
    mixed-up mapper drops it far), not its accuracy (benchmarks/real.md, "Default model")."""
    with pytest.warns(UserWarning, match="missing on disk"):      # 627 of CLIVE's 1162
        records = load_manifest("clive", shared_data / "CLIVE", allow_missing=True)
    sample = sorted(records, key=lambda r: r.name)[::25]                 # 26 images
    scores = mixiqa.load_model().score([r.path for r in sample], scale="clive")
    assert all(0.0 <= s <= 100.0 for s in scores)
    srcc = spearmanr(scores, [r.score for r in sample])[0]
    assert srcc > 0.8, f"SRCC {srcc:.3f} of the shipped model on 26 images it trained on"
    assert np.std(scores) > 3.0                                         # not a constant
