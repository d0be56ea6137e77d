"""train.preload: images decoded once and cropped on the device train on the same pixels as
the DataLoader path, evaluate in row order, and give the same fine-tuned model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import make_set
from mixiqa.data.datasets import load_manifest
from mixiqa.data.manifest import Manifest
from mixiqa.data.preload import PreloadedImages
from mixiqa.data.sampling import MixedBatchSampler
from mixiqa.data.transforms import eval_transform, train_transform
from mixiqa.train import ImageInputs

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    a = make_set(root, "alpha", 10, lambda q: q, 0, size=72)
    b = make_set(root, "beta", 9, lambda q: q, 1, size=80)     # another size: eval batches
    m = Manifest()
    for d in (a, b):
        m += load_manifest("csv", d["root"], show_progress=False, **d["options"])
    recs = list(m)
    return {"train": Manifest(recs[:6] + recs[10:15]), "val": Manifest([]),
            "test": Manifest(recs[6:10] + recs[15:])}


def both(rows, short=None, crop=48):
    tfs = (train_transform(MEAN, STD, short, crop), eval_transform(MEAN, STD, None))
    return (ImageInputs(rows, *tfs, workers=0, seed=3),
            PreloadedImages(rows, *tfs, "cpu", seed=3, eval_batch=3, threads=2))


@pytest.mark.parametrize("short", [None, 64])
def test_training_batches_match_the_worker_path(rows, short):
    workers, pre = both(rows, short)
    dom = np.array([r.dataset == "beta" for r in rows["train"]], dtype=int)
    sampler = MixedBatchSampler(dom, 4, quotas="equal", seed=1)
    for epoch in (0, 2):                         # another epoch draws other crops
        sampler.set_epoch(epoch)
        got = list(pre.train_batches(sampler))
        want = list(workers.train_batches(sampler))
        assert len(got) == len(want) > 0
        for (x, b), (x0, b0) in zip(got, want):
            assert np.array_equal(b, b0) and x.shape == (4, 3, 48, 48)
            torch.testing.assert_close(x, x0, rtol=0, atol=1e-6)
    sampler.set_epoch(0)
    first = next(iter(pre.train_batches(sampler)))[0]
    sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(pre.train_batches(sampler)))[0])


def test_eval_batches_keep_row_order_across_sizes(rows):
    workers, pre = both(rows)
    got = list(pre.eval_batches("test"))
    # 4 images of 72 px then 4 of 80 px, at most 3 a batch, never two sizes in one
    assert [len(x) for x in got] == [3, 1, 3, 1]
    want = [x[0] for x in workers.eval_batches("test")]          # one image a batch
    got = [x for batch in got for x in batch]
    assert len(got) == len(want) == 8
    for x, x0 in zip(got, want):
        torch.testing.assert_close(x, x0, rtol=0, atol=1e-6)
    assert list(pre.eval_batches("val")) == []


def test_preload_needs_a_fine_tuned_backbone_and_a_crop():
    from mixiqa.config import config_from_dict
    from mixiqa.errors import ConfigError

    base = {"name": "t", "datasets": [{"name": "clive", "root": "x"}], "model": {"freeze": False},
            "train": {"preload": True}}
    config_from_dict(base)
    for change in ({"model": {"freeze": True}}, {"train": {"preload": True, "train_crop": None}},
                   {"train": {"preload": "yes"}}):
        with pytest.raises(ConfigError, match="train.preload"):
            config_from_dict({**base, **change})
