"""Ensembles: several saved models scored as the mean of their dataset-scale scores."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from helpers import make_set
from mixiqa.cli import main
from mixiqa.errors import ConfigError, DataError
from mixiqa.models.ensemble import EnsembleModel, load_ensemble, make_ensemble, save_ensemble
from mixiqa.models.iqa import ScoreScale, build_model, load_model, read_meta

SCALES = {"alpha": ScoreScale("alpha", "rescaled", 1.0, 5.0, True, 1.0, 5.0),
          "beta": ScoreScale("beta", "rescaled", 0.0, 100.0, True, 0.0, 100.0)}


def member(tail_blocks: list[int], seed: int, datasets=("alpha", "beta")):
    """A Lite0 frozen-feature model whose last ``tail_blocks`` differ from the packaged
    weights (as after ``model.train_tail``), with a random head and affine mappers."""
    torch.manual_seed(seed)
    meta = {"method": "sind",
            "backbone": {"name": "efficientnet_lite0", "weights": "offline", "frozen": True,
                         "tail_blocks": tail_blocks},
            "features": {"backbone": "efficientnet_lite0", "weights": "offline", "short": None,
                         "crop": None, "scales": [1.0, 0.5], "pooling": "meanstd",
                         "max_short": 64, "tail": 0},
            "head": {"name": "mlp", "in_features": 2 * 2 * 512, "kwargs": {"hidden": [8]}},
            "mappers": {d: {"name": "affine", "config": {}} for d in datasets},
            "eval": {"short": 64}}
    model = build_model(meta, {d: SCALES[d] for d in datasets}).eval()
    with torch.no_grad():
        for name, p in model.backbone.model.named_parameters():
            if int(name.split(".")[1] if name.startswith("blocks.") else -1) in tail_blocks:
                p.add_(0.05 * torch.randn_like(p))           # "trained" blocks
        model.feature_norm.std.uniform_(0.5, 2.0)
        for m in model.mappers.values():
            m.raw_slope.fill_(float(torch.rand(())) + 0.5)
            m.intercept.fill_(float(torch.randn(())))
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """An ensemble folder of a one-block and a two-block member, output on alpha 1-5."""
    root = tmp_path_factory.mktemp("ens")
    members = [member([6], 0), member([5, 6], 1)]
    save_ensemble(members, root / "ens", {"reference": "alpha",
                                          "output": {"scale": "alpha", "clip": [1.0, 5.0]}},
                  [{"recipe": "one"}, {"recipe": "two"}])
    make_set(root, "imgs", 4, lambda q: q, 0, size=48)
    return root / "ens", sorted(str(p) for p in (root / "imgs").glob("*.png"))


def test_ensemble_is_the_mean_of_its_members_on_each_scale(saved):
    folder, paths = saved
    ens = load_model(folder)
    assert isinstance(ens, EnsembleModel) and ens.shared_start == 5   # blocks 0-4 run once
    singles = [load_model(folder / f"member_{i}") for i in range(2)]
    x = torch.randn(3, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    for scale in ("alpha", "beta"):
        want = torch.stack([m.predict(x, scale) for m in singles]).mean(0)
        torch.testing.assert_close(ens.predict(x, scale), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ens(x), ens.predict(x, "alpha"))      # q: the reference scale
    # files: the output scale, clipped, is the members' mean on that scale, clipped
    got = ens.score(paths)
    means = [(a + b) / 2 for a, b in zip(*(m.score(paths, scale="alpha") for m in singles))]
    assert got == pytest.approx([min(max(v, 1.0), 5.0) for v in means], rel=1e-5, abs=1e-5)
    assert ens.score(paths, scale="q") == pytest.approx(means, rel=1e-5, abs=1e-5)
    # translation: the members' translations averaged
    s = torch.tensor([1.5, 4.0])
    want = torch.stack([m.translate(s, "alpha", "beta") for m in singles]).mean(0)
    torch.testing.assert_close(ens.translate(s, "alpha", "beta"), want)


def test_members_that_share_no_blocks_run_separately(tmp_path):
    a, b = member([6], 0), member([5, 6], 1)
    with torch.no_grad():
        b.backbone.model.conv_stem.weight.mul_(1.01)     # even the stem differs
    ens = EnsembleModel([a, b], {"reference": "beta"})
    assert ens.shared_start is None
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    want = (a.predict(x, "beta") + b.predict(x, "beta")) / 2
    torch.testing.assert_close(ens(x), want, atol=1e-5, rtol=1e-5)


def test_ensemble_cli_scores_and_translates(saved, tmp_path, capsys):
    folder, paths = saved
    out = tmp_path / "scores.csv"
    assert main(["score", *paths, "--model", str(folder), "-o", str(out)]) == 0
    rows = out.read_text().splitlines()
    assert rows[0] == "path,score" and len(rows) == 1 + len(paths)
    assert [float(r.split(",")[1]) for r in rows[1:]] == pytest.approx(
        load_model(folder).score(paths), rel=1e-5)
    capsys.readouterr()
    assert main(["score", *paths, "--model", str(folder), "--scale", "gamma"]) == 2
    assert "No mapper for dataset 'gamma'" in capsys.readouterr().err
    assert main(["translate", "2.0", "--model", str(folder), "--from", "alpha",
                 "--to", "beta"]) == 0
    want = load_model(folder, with_backbone=False).translate(torch.tensor([2.0]), "alpha", "beta")
    assert float(capsys.readouterr().out) == pytest.approx(float(want), rel=1e-5)


def test_saved_ensemble_records_its_members(saved):
    folder, _ = saved
    meta = read_meta(folder)
    assert meta["format"] == "mixiqa-ensemble"
    assert meta["members"] == [{"folder": "member_0", "recipe": "one"},
                               {"folder": "member_1", "recipe": "two"}]
    assert meta["output"] == {"scale": "alpha", "clip": [1.0, 5.0]}


def test_bad_ensembles_are_refused_with_the_reason(saved, tmp_path):
    folder, _ = saved
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    shutil.rmtree(broken / "member_1")
    with pytest.raises(DataError, match=r"lacks its member folders \['member_1'\]"):
        load_model(broken)
    with pytest.raises(ConfigError, match="different datasets"):
        EnsembleModel([member([6], 0), member([6], 1, datasets=("alpha",))], {})
    other = member([6], 2)
    other.meta["features"] = {**other.meta["features"], "max_short": 128}
    with pytest.raises(ConfigError, match="read images differently .'features'"):
        EnsembleModel([member([6], 0), other], {})
    with pytest.raises(DataError, match="No config.yaml in or above"):    # a recipe asked for
        make_ensemble([folder / "member_0", folder / "member_1"], tmp_path / "nc",
                      need_config=True)
    with pytest.raises(ConfigError, match="at least two"):
        EnsembleModel([member([6], 0)], {})
    ens = load_model(folder)
    with pytest.raises(ConfigError, match="No mapper for dataset 'gamma'"):
        ens.predict(torch.zeros(1, 3, 32, 32), "gamma")
    with pytest.raises(ConfigError, match="use predict"):
        ens.to_dataset_scale(torch.zeros(2), "alpha")
    newer = json.loads((folder / "model.json").read_text())
    newer["format_version"] = 99
    with pytest.raises(DataError, match="newer ensemble format"):
        load_ensemble(folder, newer)


def test_ensemble_command_averages_saved_models(saved, tmp_path, capsys):
    folder, paths = saved
    members = [str(folder / "member_0"), str(folder / "member_1")]
    out = tmp_path / "pair"
    assert main(["ensemble", *members, "--out", str(out), "--output-scale", "beta",
                 "--clip", "0", "100"]) == 0
    meta = read_meta(out)
    assert meta["reference"] == "beta" and meta["output"] == {"scale": "beta",
                                                              "clip": [0.0, 100.0]}
    assert [m["run"] for m in meta["members"]] == members
    pair = load_model(out)
    singles = [load_model(m) for m in members]
    means = [(a + b) / 2 for a, b in zip(*(m.score(paths, scale="beta") for m in singles))]
    assert pair.score(paths) == pytest.approx([min(max(v, 0), 100) for v in means], rel=1e-5)
    capsys.readouterr()
    assert main(["ensemble", *members, "--out", str(out)]) == 2        # not a new folder
    assert "is not empty" in capsys.readouterr().err
    assert main(["ensemble", str(folder), members[0], "--out", str(tmp_path / "x")]) == 2
    assert "is an ensemble already" in capsys.readouterr().err
