"""The model shipped in the package: its members are what their recipes say, and it scores.

These read the committed files only; the model is rebuilt by hand (two trainings of
configs/default_model.yaml, then benchmarks/ship_default_model.py, as that script's docstring
says), so a rebuild that forgets to ship, or ships other recipes than these, fails here.
"""

from __future__ import annotations

import json
from dataclasses import asdict
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
# the shipped model is the mean of two models of that recipe: Lite0's last block trained,
# and its last two (benchmarks/real.md, "One trained block averaged with two")
MEMBERS = [[], ["model.train_tail=2", "train.layer_decay=0.3"]]


def shipped_members() -> list[tuple[dict, dict, Path]]:
    """(recorded recipe, model.json, folder) of each member of the shipped ensemble."""
    meta = read_meta(default_model_path())
    assert meta["format"] == "mixiqa-ensemble"
    assert meta["output"] == {"scale": "clive", "clip": [0.0, 100.0]}    # the README's scale
    assert meta["reference"] == "clive"
    folders = [default_model_path() / m["folder"] for m in meta["members"]]
    return [(m, read_meta(f), f) for m, f in zip(meta["members"], folders)]


@pytest.mark.parametrize("i", range(len(MEMBERS)))
def test_shipped_model_is_its_recipe(i):
    members = shipped_members()
    assert len(members) == len(MEMBERS)
    recipe, meta, _ = members[i]
    cfg = load_config(CONFIG, MEMBERS[i])
    want = json.loads(json.dumps(cfg.to_dict()))          # as the file holds it: lists
    for part in ("split", "model", "method", "train"):   # what it was trained with
        # a config field added after the model was shipped counts at its default, which
        # keeps the old behaviour (each new option is opt-in)
        defaults = json.loads(json.dumps(asdict(type(getattr(cfg, part))())))
        assert {**defaults, **recipe["config"][part]} == want[part], part
    assert recipe["config"]["datasets"] == [d.name for d in cfg.datasets]
    # and what its file holds
    assert meta["method"] == cfg.method.name
    assert meta["backbone"]["name"] == cfg.model.backbone
    assert meta["backbone"]["weights"] == "offline"           # loads without the internet
    # the last train_tail blocks are the trained ones, stored over the package's weights
    n = len(create_backbone(cfg.model.backbone, weights="none").model.blocks)   # Lite0: 7
    assert meta["backbone"]["tail_blocks"] == list(range(n - cfg.model.train_tail, n))
    assert meta["head"]["name"] == cfg.model.head
    assert meta["head"]["kwargs"] == cfg.model.head_kwargs
    feats = meta["features"]
    assert (feats["pooling"], feats["scales"], feats["max_short"]) == (
        cfg.model.pooling, list(cfg.model.scales), cfg.model.feature_max_short)
    assert sorted(meta["mappers"]) == sorted(d.name for d in cfg.datasets)
    assert "output" not in meta                          # the ensemble's output applies


def test_shipped_model_files_hold_their_trained_blocks():
    for _, meta, folder in shipped_members():
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            blocks = {int(k.split(".")[3]) for k in f.keys()
                      if k.startswith("backbone.model.blocks.")}
        assert blocks == set(meta["backbone"]["tail_blocks"])  # no more (the rest is packaged)


@pytest.mark.shared_data
def test_shipped_model_ranks_clive(shared_data):
    """Loaded with no path, it scores real photos on 0-100 in MOS order. It has seen these
    images in training, so this checks that the files load right (a lost trained block or a
    mixed-up mapper drops it far), not its accuracy (benchmarks/real.md, "Default model")."""
    with pytest.warns(UserWarning, match="missing on disk"):      # 627 of CLIVE's 1162
        records = load_manifest("clive", shared_data / "CLIVE", allow_missing=True)
    sample = sorted(records, key=lambda r: r.name)[::25]                 # 26 images
    model = mixiqa.load_model()
    assert model.shared_start == 5            # the members' common blocks 0-4 run once
    scores = model.score([r.path for r in sample])                       # CLIVE, 0-100
    assert all(0.0 <= s <= 100.0 for s in scores)
    srcc = spearmanr(scores, [r.score for r in sample])[0]
    assert srcc > 0.8, f"SRCC {srcc:.3f} of the shipped model on 26 images it trained on"
    assert np.std(scores) > 3.0                                         # not a constant
