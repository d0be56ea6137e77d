"""The synthetic alignment benchmark: spec, build, annotation, alignment scores, runner, CLI."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from scipy import ndimage
from scipy.stats import spearmanr

from mixiqa.data.datasets import load_manifest
from mixiqa.data.manifest import Manifest, Record
from mixiqa.distortions import distortion_names
from mixiqa.errors import ConfigError, DataError
from mixiqa.synth import (SynthSpec, add_synth_command, alignment_scores, build_synth,
                          cmd_synth, default_spec, load_spec, reannotate, resolve_sources,
                          run_synth_benchmark, swap_transforms, top_rated_sources)
from mixiqa.synth.sources import load_source
from mixiqa.synth.spec import TRANSFORMS, default_windows

pytestmark = pytest.mark.usefixtures("one_thread")   # tiny tensors on a busy shared CPU

TYPES = ["gaussian_blur", "white_noise", "jpeg"]
REPO = Path(__file__).resolve().parents[1]


def photo(seed: int, size: int = 80) -> np.ndarray:
    """A smooth colour texture with edges: enough structure for every distortion to bite."""
    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((size, size, 3)), (rng.uniform(1, 3),) * 2 + (0,))
    img = (img - img.min()) / (img.max() - img.min())
    r0, c0 = rng.integers(5, size // 2, 2)
    img[r0:r0 + size // 3, c0:c0 + size // 3] = rng.random(3)      # a flat patch, sharp edges
    return (img * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sources")
    for i in range(8):
        Image.fromarray(photo(i)).save(folder / f"p{i}.png")
    return folder


def tiny_spec(seed: int = 0) -> SynthSpec:
    spec = default_spec(2, seed=seed, distortions=TYPES, size=64)
    spec.datasets[1].higher_better = False       # syn_b: DMOS
    spec.datasets[1].score_range = (0.0, 10.0)
    return spec


@pytest.fixture(scope="module")
def build(sources, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    return out, build_synth(resolve_sources([str(sources)]), out, tiny_spec())


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---- spec ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", TRANSFORMS.names())
def test_transforms_are_increasing_maps_of_the_unit_interval(name):
    u = np.linspace(0, 1, 101)
    t = TRANSFORMS.get(name)(u, {"logistic": 10.0, "power": 2.5, "exp": 3.0, "log": 30.0}
                             .get(name, 1.0))
    assert abs(t[0]) < 1e-9 and abs(t[-1] - 1) < 1e-9 and np.all(np.diff(t) > 0)


def test_default_spec_is_misaligned_on_purpose():
    spec = default_spec(4)
    assert len({d.transform for d in spec.datasets}) == 4
    assert len({tuple(d.score_range) for d in spec.datasets}) == 4
    assert any(not d.higher_better for d in spec.datasets)
    windows = [d.window for d in spec.datasets]
    assert windows == default_windows(4)
    for (a0, a1), (b0, b1) in zip(windows, windows[1:]):
        assert a0 < b0 < a1 < b1                           # overlapping only partly
    covered = set().union(*(d.distortions for d in spec.datasets))
    assert covered == set(distortion_names())
    assert default_spec(4, seed=1) != spec                 # subsets follow the seed


def test_configs_synth_yaml_is_the_default_spec():
    assert load_spec(REPO / "configs" / "synth.yaml") == default_spec(4, seed=0)


def test_bad_spec_values_raise_config_error(tmp_path):
    spec = default_spec(2, distortions=TYPES)
    spec.datasets[0].distortions = ("jpeg", "gausian_blur")
    with pytest.raises(ConfigError, match="gausian_blur"):
        spec.check()
    spec = default_spec(2, distortions=TYPES)
    spec.datasets[0].window = (0.7, 0.2)
    with pytest.raises(ConfigError, match="window"):
        spec.check()
    spec = default_spec(2, distortions=TYPES)
    spec.latent = "psnr"
    with pytest.raises(ConfigError, match="haarpsi"):
        spec.check()
    with pytest.raises(ConfigError, match="syn_a, syn_b"):
        swap_transforms(default_spec(2, distortions=TYPES), "syn_a", "syn_z")


def test_swap_transforms_swaps_only_the_transforms():
    spec = default_spec(3, distortions=TYPES)
    swapped = swap_transforms(spec, "syn_a", "syn_c")
    a, c = spec.dataset("syn_a"), spec.dataset("syn_c")
    assert (swapped.dataset("syn_a").transform, swapped.dataset("syn_c").transform) == \
        (c.transform, a.transform)
    assert swapped.dataset("syn_a").transform_param == c.transform_param
    assert swapped.dataset("syn_a").window == a.window
    assert swapped.dataset("syn_a").score_range == a.score_range
    assert swapped.dataset("syn_b") == spec.dataset("syn_b")
    assert spec.dataset("syn_a").transform == a.transform      # the input is untouched


# ---- sources ---------------------------------------------------------------------------

def test_top_rated_sources_orders_by_quality_either_direction():
    rec = lambda n, s, hb: Record(f"/x/{n}.png", n, s, "d", hb, 0.0, 10.0)   # noqa: E731
    mos = Manifest([rec("a", 3, True), rec("b", 9, True), rec("c", 6, True)])
    assert top_rated_sources(mos, 2) == ["/x/b.png", "/x/c.png"]
    dmos = Manifest([rec("a", 3, False), rec("b", 9, False), rec("c", 1, False)])
    assert top_rated_sources(dmos, 2) == ["/x/c.png", "/x/a.png"]
    with pytest.raises(ConfigError):
        top_rated_sources(mos, 0)


def test_skimage_sources_ship_with_the_wheel():
    origins = resolve_sources(["skimage"], top=2)
    assert origins == ["skimage:astronaut", "skimage:chelsea"]
    img = load_source("skimage:chelsea", 48)
    assert img.shape == (48, 48, 3) and img.dtype == np.float32 and 0 <= img.min() <= img.max() <= 1
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_sources(["/no/such/folder"])


# ---- build -----------------------------------------------------------------------------

def test_build_writes_disjoint_content_per_dataset(build):
    out, doc = build
    groups = {}
    for name in ("syn_a", "syn_b"):
        rows = read_rows(out / name / "scores.csv")
        assert list(rows[0]) == ["image", "score", "std", "group", "distortion"]
        groups[name] = {r["group"] for r in rows}
        assert groups[name] <= set(doc["assignment"][name])
        assert all((out / name / r["image"]).is_file() for r in rows)
    assert not groups["syn_a"] & groups["syn_b"]
    assert sorted(doc["assignment"]["syn_a"] + doc["assignment"]["syn_b"]) == \
        [f"s{i:03d}" for i in range(8)]
    assert len(list((out / "sources").glob("*.png"))) == 8
    assert json.loads((out / "synth.json").read_text())["spec"] == tiny_spec().to_dict()


def test_latent_windows_overlap_but_differ(build):
    out, doc = build
    (a0, a1), (b0, b1) = (doc["windows"][n]["latent"] for n in ("syn_a", "syn_b"))
    assert a0 < b0 < a1 < b1
    latent = read_rows(out / "latent.csv")
    for name, (lo, hi) in (("syn_a", (a0, a1)), ("syn_b", (b0, b1))):
        vals = [float(r["latent"]) for r in latent if r["dataset"] == name]
        assert lo <= min(vals) and max(vals) <= hi
    pristine = [r for r in latent if r["distortion"] == "pristine"]
    assert pristine and {r["dataset"] for r in pristine} == {"syn_b"}   # only the top window
    assert all(abs(float(r["latent"]) - 1) < 1e-6 for r in pristine)


def test_scores_follow_latent_in_the_stated_direction(build):
    out, _ = build
    latent = {r["path"].split("/")[-1]: float(r["latent"]) for r in read_rows(out / "latent.csv")}
    for name, sign, (lo, hi) in (("syn_a", 1, (0, 100)), ("syn_b", -1, (0, 10))):
        rows = read_rows(out / name / "scores.csv")
        s = np.array([float(r["score"]) for r in rows])
        q = np.array([latent[r["image"].split("/")[-1]] for r in rows])
        assert sign * spearmanr(s, q)[0] > 0.9
        assert lo <= s.min() and s.max() <= hi
        assert s.max() - s.min() > 0.5 * (hi - lo)        # raters use most of their scale


def test_csv_files_load_with_the_generic_parser(build):
    out, _ = build
    m = load_manifest("csv", out / "syn_b", file="scores.csv", name="syn_b",
                      score_range="0,10", higher_better=False)
    assert len(m) == len(read_rows(out / "syn_b" / "scores.csv")) > 10
    assert m.datasets == ["syn_b"] and not m[0].higher_better
    assert all(Path(r.path).is_file() and r.group and r.distortion and r.std > 0 for r in m)
    cfg = yaml.safe_load((out / "experiment.yaml").read_text())
    assert cfg["split"] == {"protocol": "content", "ratios": [0.6, 0.2, 0.2], "seeds": [0]}
    assert cfg["datasets"][1]["options"]["higher_better"] is False


def test_build_is_deterministic_and_resumable(build, sources, tmp_path):
    out, doc = build
    first = out / "syn_a" / "images" / sorted((out / "syn_a" / "images").iterdir())[0].name
    stamp = first.stat().st_mtime_ns
    again = build_synth(resolve_sources([str(sources)]), out, tiny_spec())   # resume
    assert first.stat().st_mtime_ns == stamp                      # not rendered again
    assert again["windows"] == doc["windows"]
    assert (out / "syn_a" / "scores.csv").read_text() == \
        read_text_of_fresh_build(sources, tmp_path / "fresh", "syn_a")
    with pytest.raises(ConfigError, match="new --out"):
        build_synth(resolve_sources([str(sources)]), out, tiny_spec(seed=1))


def read_text_of_fresh_build(sources: Path, out: Path, name: str) -> str:
    build_synth(resolve_sources([str(sources)]), out, tiny_spec())
    return (out / name / "scores.csv").read_text()


def test_too_few_sources_warns_or_fails(sources, tmp_path):
    origins = resolve_sources([str(sources)], top=3)
    with pytest.warns(UserWarning, match="fewer than 4 sources"):
        build_synth(origins, tmp_path / "few", tiny_spec())
    with pytest.raises(ConfigError, match="own content"):
        build_synth(origins[:1], tmp_path / "one", tiny_spec())


def test_reannotate_with_swapped_transforms(build, tmp_path):
    out, _ = build
    spec = tiny_spec()
    spec.datasets[1].transform, spec.datasets[1].transform_param = "log", 30.0
    derived = reannotate(out, swap_transforms(spec, "syn_a", "syn_b"), tmp_path / "swap")
    old = read_rows(out / "syn_a" / "scores.csv")
    new = read_rows(derived / "syn_a" / "scores.csv")
    assert [Path(r["image"]).name for r in new] == [Path(r["image"]).name for r in old]
    assert all(Path(r["image"]).is_absolute() and Path(r["image"]).is_file() for r in new)
    assert [r["score"] for r in new] != [r["score"] for r in old]
    assert load_manifest("csv", derived / "syn_a", file="scores.csv", name="syn_a").records


# ---- alignment scores ------------------------------------------------------------------

def fake_run(run: Path, latent_csv: Path, q_of, splits: int = 2) -> None:
    """A run folder whose predictions.csv hold q = q_of(dataset, latent)."""
    rows = read_rows(latent_csv)
    for k in range(splits):
        sdir = run / f"split_{k:02d}"
        sdir.mkdir(parents=True)
        with open(sdir / "predictions.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "dataset", "score", "higher_better", "q", "pred", "path"])
            for i, r in enumerate(rows[k::splits]):
                lat = float(r["latent"])
                hb = r["dataset"] == "syn_a"
                w.writerow([r["path"], r["dataset"], lat if hb else 1 - lat, int(hb),
                            q_of(r["dataset"], lat, i), "", f"/elsewhere/{r['path']}"])


def test_alignment_scores_perfect_and_reversed(build, tmp_path):
    out, _ = build
    latent = out / "latent.csv"
    fake_run(tmp_path / "perfect", latent, lambda d, lat, i: lat)
    res = alignment_scores(tmp_path / "perfect", latent)
    assert res["pooled_srcc"] == pytest.approx(1.0) and res["n_splits"] == 2
    for d in ("syn_a", "syn_b"):
        assert res["per_dataset"][d]["srcc_score"] == pytest.approx(1.0)
        assert res["per_dataset"][d]["srcc_latent"] == pytest.approx(1.0)
    fake_run(tmp_path / "rev", latent, lambda d, lat, i: -lat if d == "syn_b" else lat)
    rev = alignment_scores(tmp_path / "rev", latent)
    assert rev["pooled_srcc"] < 0.5
    assert rev["per_dataset"]["syn_b"]["srcc_latent"] == pytest.approx(-1.0)
    # each dataset ranked perfectly inside, but on shifted scales: pooled drops below 1
    fake_run(tmp_path / "shift", latent, lambda d, lat, i: lat + (1.0 if d == "syn_a" else 0))
    shift = alignment_scores(tmp_path / "shift", latent)
    assert shift["per_dataset"]["syn_a"]["srcc_latent"] == pytest.approx(1.0)
    assert shift["pooled_srcc"] < 0.99


def test_alignment_scores_errors(build, tmp_path):
    out, _ = build
    with pytest.raises(DataError, match="predictions.csv"):
        alignment_scores(tmp_path, out / "latent.csv")
    fake_run(tmp_path / "run", out / "latent.csv", lambda d, lat, i: lat, splits=1)
    other = tmp_path / "other.csv"
    other.write_text("path,latent,dataset,group,distortion,level\nx/a.png,0.5,d,g,jpeg,1\n")
    with pytest.raises(DataError, match="not in the latent table"):
        alignment_scores(tmp_path / "run", other)


# ---- the runner and the command ----------------------------------------------------------

FAST = ["train.epochs=2", "train.batch_size=16", "model.feature_short=64",
        "model.feature_crop=64", "model.scales=[1.0]", "model.pooling=avg",
        "model.head_kwargs={hidden: [16]}"]


def test_run_synth_benchmark_end_to_end(build, tmp_path):
    out, _ = build
    doc = run_synth_benchmark(out, ["naive", "monotonic"], 1, tmp_path / "run",
                              FAST + [f"train.cache_dir={tmp_path / 'cache'}"],
                              oracle="naive", log=lambda *a: None)
    assert set(doc["methods"]) == {"naive", "monotonic", "oracle:naive"}
    assert doc["n_splits"] == 1
    for m in doc["methods"].values():
        assert -1 <= m["alignment"]["pooled_srcc"] <= 1
        assert set(m["alignment"]["per_dataset"]) == {"syn_a", "syn_b"}
    table = (tmp_path / "run" / "synth_table.md").read_text()
    assert "| naive |" in table and "| monotonic |" in table
    saved = json.loads((tmp_path / "run" / "synth_results.json").read_text())
    assert saved["methods"]["naive"]["alignment"] == doc["methods"]["naive"]["alignment"]
    assert (tmp_path / "run" / "monotonic" / "split_00" / "predictions.csv").is_file()
    # the oracle trains on 10 x latent, on exactly the same test images
    latent = {r["path"].split("/")[-1]: float(r["latent"]) for r in read_rows(out / "latent.csv")}
    oracle = read_rows(tmp_path / "run" / "oracle_naive" / "split_00" / "predictions.csv")
    naive = read_rows(tmp_path / "run" / "naive" / "split_00" / "predictions.csv")
    assert [r["name"] for r in oracle] == [r["name"] for r in naive]
    assert all(float(r["score"]) == pytest.approx(10 * latent[Path(r["path"]).name], abs=1e-4)
               for r in oracle)
    with pytest.raises(ConfigError, match="naive"):
        run_synth_benchmark(out, ["naiv"], 1, tmp_path / "bad")


def test_cli_build_and_swap_run(sources, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_synth_command(parser.add_subparsers())
    build_dir = tmp_path / "b"
    args = parser.parse_args(["synth", "build", "--sources", str(sources), "--out",
                              str(build_dir), "--datasets", "2", "--size", "64",
                              "--types", ",".join(TYPES)])
    assert cmd_synth(args) == 0
    assert "syn_a:" in capsys.readouterr().out
    sets = ["--set=" + s for s in FAST + [f"train.cache_dir={tmp_path / 'cache'}"]]
    args = parser.parse_args(["synth", "run", str(build_dir), "--methods", "linear",
                              "--splits", "1", "--out", str(tmp_path / "r"),
                              "--swap", "syn_a,syn_b", *sets])
    assert cmd_synth(args) == 0
    out = capsys.readouterr().out
    assert "| linear |" in out
    spec = json.loads((tmp_path / "r" / "data" / "synth.json").read_text())["spec"]
    assert [d["transform"] for d in spec["datasets"]] == ["power", "logistic"]
