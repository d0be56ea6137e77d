"""Splits: disjoint, complete, deterministic by seed, and faithful to each protocol."""

from __future__ import annotations

import json
import random

import pytest

from mixiqa.data.manifest import Manifest, Record
from mixiqa.data.splits import (Split, cross_split, leave_one_out_splits, make_splits,
                                official_split, random_split, repeated_splits)
from mixiqa.errors import ConfigError, DataError


def rec(dataset: str, name: str, **kw) -> Record:
    return Record(path=f"/data/{dataset}/{name}", name=name, score=float(len(name)),
                  dataset=dataset, higher_better=True, score_min=0.0, score_max=10.0, **kw)


def synthetic(dataset: str = "kadid10k", refs: int = 20, per_ref: int = 5) -> list[Record]:
    return [rec(dataset, f"I{g:02d}_{d}.png", group=f"I{g:02d}")
            for g in range(refs) for d in range(per_ref)]


def authentic(dataset: str = "koniq", n: int = 100, **kw) -> list[Record]:
    return [rec(dataset, f"{i:05d}.jpg", **kw) for i in range(n)]


@pytest.fixture
def mixed() -> Manifest:
    return Manifest(synthetic() + authentic() + authentic("clive", 50))


def assert_partition(split: Split, manifest: Manifest) -> None:
    parts = [set(p) for p in (split.train, split.val, split.test)]
    assert sum(len(p) for p in parts) == len(split.train) + len(split.val) + len(split.test)
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert parts[0] | parts[1] | parts[2] == set(manifest.keys())


def groups(keys: list[str], manifest: Manifest) -> set[tuple[str, str]]:
    by_key = dict(zip(manifest.keys(), manifest.records))
    return {(by_key[k].dataset, by_key[k].group) for k in keys if by_key[k].group}


# ---- random / content ----------------------------------------------------------------

@pytest.mark.parametrize("ratios", [(0.6, 0.2, 0.2), (0.7, 0.1, 0.2), (0.8, 0.0, 0.2)])
def test_random_split_partitions_each_dataset_by_ratio(mixed, ratios):
    split = random_split(mixed, ratios=ratios, seed=1)
    assert_partition(split, mixed)
    counts = split.counts()
    for dataset in mixed.datasets:
        n = len(mixed.where(dataset=dataset))
        for part, ratio in zip(("train", "val", "test"), ratios):
            assert abs(counts[part].get(dataset, 0) - ratio * n) < 1
            assert (counts[part].get(dataset, 0) > 0) == (ratio > 0)
    assert split.ratios == ratios and split.seed == 1 and split.protocol == "random"


def test_random_split_is_deterministic_by_seed_and_order_independent(mixed):
    shuffled = list(mixed.records)
    random.Random(0).shuffle(shuffled)
    a = random_split(mixed, seed=3)
    assert a == random_split(mixed, seed=3)
    assert a == random_split(Manifest(shuffled), seed=3)
    assert a.test != random_split(mixed, seed=4).test


def test_random_split_of_a_dataset_ignores_the_other_datasets(mixed):
    alone = random_split(mixed.where(dataset="clive"), seed=5)
    together = random_split(mixed, seed=5)
    assert alone.test == [k for k in together.test if k.startswith("clive/")]


def test_content_split_keeps_each_group_on_one_side(mixed):
    split = make_splits(mixed, "content", seed=2)[0]
    assert_partition(split, mixed)
    g = [groups(p, mixed) for p in (split.train, split.val, split.test)]
    assert not (g[0] & g[1] or g[0] & g[2] or g[1] & g[2])
    assert [len(x) for x in g] == [12, 4, 4]  # 20 references, 60/20/20
    # Authentic sets (no groups) are split by image in the same call.
    assert split.counts()["test"]["koniq"] == 20


def test_random_split_by_image_does_share_groups(mixed):
    split = random_split(mixed, seed=2)
    assert groups(split.train, mixed) & groups(split.test, mixed)


def test_by_group_errors_name_the_dataset_and_the_fix(mixed):
    with pytest.raises(DataError, match="'clive': 50 of 50 records.*by_group=False"):
        random_split(mixed, by_group=True)
    partial = Manifest(synthetic("mine", refs=5) + [rec("mine", "extra.png")])
    with pytest.raises(DataError, match="1 of 26 records have no content group"):
        make_splits(partial, "content")
    # A catalog synthetic set parsed without its references must not fall back silently.
    with pytest.raises(DataError, match="'live'"):
        make_splits(Manifest(authentic("live", 20)), "content")


# ---- ratio and size errors -------------------------------------------------------------

@pytest.mark.parametrize("ratios", [(0.6, 0.2, 0.1), (0.7, 0.2, 0.2), (0.5, 0.5)])
def test_bad_ratios_raise_config_error(mixed, ratios):
    with pytest.raises(ConfigError, match="ratios"):
        random_split(mixed, ratios=ratios)


def test_too_small_dataset_names_dataset_and_minimum(mixed):
    tiny = mixed + Manifest(authentic("bid", 2))
    with pytest.raises(DataError, match="'bid' has 2 images.*at least 4"):
        random_split(tiny, ratios=(0.6, 0.2, 0.2))
    assert len(random_split(tiny, ratios=(0.5, 0.0, 0.5)).test) > 0


def test_duplicate_keys_are_rejected():
    with pytest.raises(DataError, match="more than once"):
        random_split(Manifest(authentic(n=10) + authentic(n=1)))


# ---- official ---------------------------------------------------------------------------

def test_official_split_is_respected_and_val_carved_from_train():
    records = (authentic("biq2021", 80, split="train")
               + [rec("biq2021", f"t{i}.jpg", split="test") for i in range(20)])
    m = Manifest(records)
    split = official_split(m, val_ratio=0.25, seed=0)
    assert_partition(split, m)
    assert sorted(split.test) == sorted(f"biq2021/t{i}.jpg" for i in range(20))
    assert len(split.val) == 20 and len(split.train) == 60
    assert split.val != official_split(m, val_ratio=0.25, seed=1).val


def test_official_val_from_the_release_is_kept():
    m = Manifest([rec("koniq", f"{i}.jpg", split=s)
                  for i, s in enumerate(["training"] * 6 + ["validation"] * 2 + ["test"] * 2)])
    split = make_splits(m, "official")[0]
    assert split.val == ["koniq/6.jpg", "koniq/7.jpg"]
    assert split.test == ["koniq/8.jpg", "koniq/9.jpg"]


def test_official_split_needs_labels():
    m = Manifest(authentic("clive", 10))
    with pytest.raises(DataError, match="'clive'.*protocol 'random'"):
        official_split(m)


# ---- repeated ---------------------------------------------------------------------------

def test_repeated_splits_record_seeds_and_differ(mixed):
    splits = repeated_splits(mixed, protocol="content")
    assert [s.seed for s in splits] == list(range(10))
    assert len({tuple(s.test) for s in splits}) == 10
    assert [s.seed for s in repeated_splits(mixed, seeds=[7, 11])] == [7, 11]
    assert repeated_splits(mixed, n=2)[1] == random_split(mixed, seed=1)
    with pytest.raises(ConfigError, match="n=3"):
        repeated_splits(mixed, n=3, seeds=[1])


# ---- cross-set --------------------------------------------------------------------------

def test_cross_split_trains_and_tests_on_named_datasets(mixed):
    split = cross_split(mixed, train_datasets=["koniq", "kadid10k"], seed=0)
    assert_partition(split, mixed)
    assert set(split.counts()["train"]) == set(split.counts()["val"]) == {"koniq", "kadid10k"}
    assert set(split.counts()["test"]) == {"clive"}
    # The val part of the synthetic set is carved by content group.
    assert not groups(split.train, mixed) & groups(split.val, mixed)
    only = make_splits(mixed, "cross", train_datasets="koniq", test_datasets=["clive"])[0]
    assert set(only.counts()["test"]) == {"clive"} and "kadid10k" not in only.datasets


def test_cross_split_errors(mixed):
    with pytest.raises(ConfigError, match="'konq'.*Did you mean 'koniq'"):
        cross_split(mixed, train_datasets=["konq"])
    with pytest.raises(ConfigError, match="both"):
        cross_split(mixed, train_datasets=["koniq"], test_datasets=["koniq", "clive"])
    with pytest.raises(ConfigError, match="no dataset left"):
        cross_split(mixed, train_datasets=mixed.datasets)


# ---- leave-one-out ----------------------------------------------------------------------

def test_leave_one_scene_out():
    scenes = ["animal", "city", "food"]
    m = Manifest([rec("spaq", f"{i}.jpg", scene=scenes[i % 3]) for i in range(60)])
    splits = make_splits(m, "loo-scene", val_ratio=0.2, seed=0)
    assert [s.options["held_out"] for s in splits] == scenes
    scene_of = {f"spaq/{r.name}": r.scene for r in m}
    for held, split in zip(scenes, splits):
        assert_partition(split, m)
        assert {scene_of[k] for k in split.test} == {held}
        assert held not in {scene_of[k] for k in split.train + split.val}
        assert len(split.val) == 8  # 20% of the 40 training images


def test_leave_one_group_out_holds_out_dataset_groups():
    m = Manifest(synthetic("live", refs=4, per_ref=3) + synthetic("csiq", refs=3, per_ref=3))
    splits = leave_one_out_splits(m, by="group", val_ratio=0.34, seed=0)
    assert len(splits) == 7  # "I00" of live and of csiq are different contents
    for split in splits:
        assert_partition(split, m)
        held = groups(split.test, m)
        assert len(held) == 1 and not held & groups(split.train + split.val, m)
        assert not groups(split.train, m) & groups(split.val, m)


def test_leave_one_out_needs_the_label():
    with pytest.raises(DataError, match="no scene"):
        make_splits(Manifest(authentic(n=10)), "loo-scene")


# ---- files and the factory --------------------------------------------------------------

def test_save_load_round_trip_and_apply(mixed, tmp_path):
    split = make_splits(mixed, "cross", train_datasets=["koniq"], seed=4)[0]
    path = tmp_path / "split.json"
    split.save(path)
    doc = json.loads(path.read_text())
    assert doc["protocol"] == "cross" and doc["counts"]["train"]["koniq"] == 90
    loaded = Split.load(path)
    assert loaded == split
    train, val, test = loaded.apply(mixed)
    assert train.keys() == split.train and test.keys() == split.test
    assert {r.dataset for r in val} == {"koniq"}


def test_apply_names_missing_keys(mixed, tmp_path):
    split = random_split(mixed, seed=0)
    dropped = Manifest([r for r in mixed if r.name != "00007.jpg"])
    with pytest.raises(DataError, match="2 key\\(s\\) are missing.*koniq/00007.jpg"):
        split.apply(dropped)
    split.save(tmp_path / "s.json")
    with pytest.raises(DataError, match="s.json"):
        Split.load(tmp_path / "s.json").apply(dropped)


def test_load_rejects_bad_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        Split.load(tmp_path / "bad.json")
    (tmp_path / "overlap.json").write_text(json.dumps(
        {"train": ["a/1", "a/2"], "val": [], "test": ["a/2"]}))
    with pytest.raises(DataError, match="'a/2' is listed in both train and test"):
        Split.load(tmp_path / "overlap.json")


def test_make_splits_unknown_names_suggest_fixes(mixed):
    with pytest.raises(ConfigError, match="Did you mean 'random'"):
        make_splits(mixed, "randm")
    with pytest.raises(ConfigError, match="no option 'ratio'.*Did you mean 'ratios'"):
        make_splits(mixed, "random", ratio=(0.6, 0.2, 0.2))
    assert make_splits(mixed, "RANDOM", seed=1) == [random_split(mixed, seed=1)]
