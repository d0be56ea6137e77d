"""Experiment configs: YAML/TOML loading, overrides, unknown keys, relative roots."""

import pytest

from mixiqa.config import load_config, parse_key_value
from mixiqa.errors import ConfigError


def test_yaml_with_overrides_and_relative_roots(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("datasets:\n  - {name: clive, root: data/CLIVE}\n"
                 "train: {epochs: 3}\nmodel: {scales: [1.0, 0.5]}\n")
    cfg = load_config(p, ["train.epochs=7", "method.name=mimi"])
    assert cfg.train.epochs == 7 and cfg.method.name == "mimi"
    assert cfg.model.scales == (1.0, 0.5)
    assert cfg.datasets[0].root == str((tmp_path / "data/CLIVE").resolve())
    cfg.save(tmp_path / "saved.yaml")
    again = load_config(tmp_path / "saved.yaml")
    assert again.train.epochs == 7 and again.datasets[0].name == "clive"


def test_toml(tmp_path):
    p = tmp_path / "exp.toml"
    p.write_text('[[datasets]]\nname = "biq2021"\nroot = "/x"\n[train]\nlr = 0.01\n')
    assert load_config(p).train.lr == 0.01


def test_unknown_key_did_you_mean(tmp_path):
    p = tmp_path / "exp.yaml"
    p.write_text("datasets: [{name: clive, root: x}]\ntrain: {epohcs: 3}\n")
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_config(p)


def test_missing_file_and_empty_datasets(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "e.yaml"
    p.write_text("name: x\n")
    with pytest.raises(ConfigError, match="datasets"):
        load_config(p)


def test_key_value_pairs_typed_and_checked():
    # one parser for config overrides, `bench --set` and the CLI's --option
    assert parse_key_value("train.epochs=5") == ("train.epochs", 5)
    assert parse_key_value("split.seeds=[0, 1]") == ("split.seeds", [0, 1])
    assert parse_key_value("column=MOS_zscore") == ("column", "MOS_zscore")
    assert parse_key_value("a=b=c") == ("a", "b=c")
    with pytest.raises(ConfigError, match="--option 'column' must look like KEY=VALUE"):
        parse_key_value("column", "--option", "column=MOS_zscore")
    with pytest.raises(ConfigError, match="no key"):
        parse_key_value("=5")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_key_value("x=[1, 2")


def test_every_committed_config_reads():
    """The YAML files in configs/ (experiments, benches, pre-training, synthetic data) pass
    their loaders' checks, so a command in the README or benchmarks/ cannot fail on a typo."""
    from pathlib import Path

    import yaml

    from mixiqa.bench.load import check_bench, load_bench_config
    from mixiqa.pretrain.config import load_pretrain_config
    from mixiqa.synth.spec import load_spec

    special = {"reiqa_pretrain.yaml": load_pretrain_config, "synth.yaml": load_spec}
    paths = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(paths) >= 10
    for path in paths:
        if path.name in special:
            special[path.name](path)
        elif "methods" in yaml.safe_load(path.read_text()):
            check_bench(load_bench_config(path))
        else:
            load_config(path)
