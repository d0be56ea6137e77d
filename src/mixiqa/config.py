"""Typed experiment configuration: dataclasses, loaded from YAML/TOML, overridable from the CLI.

Every run saves its resolved config next to its results, so a table can always be traced
back to how it was made.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from mixiqa.errors import ConfigError


@dataclass
class DataConfig:
    """One dataset to train and/or test on."""

    name: str
    root: str
    options: dict = field(default_factory=dict)
    allow_missing: bool = False


@dataclass
class SplitConfig:
    """Which protocol splits the data; ``seeds`` gives one run per seed."""

    protocol: str = "random"          # random | content | official | cross | loo-scene | loo-group
    ratios: tuple = (0.6, 0.2, 0.2)   # train, val, test
    seeds: tuple = (0,)
    test_datasets: tuple = ()         # cross protocol
    file: str | None = None           # a saved split file instead of a protocol


@dataclass
class ModelConfig:
    """Backbone, head, and for a frozen backbone the cached-feature recipe."""

    backbone: str = "efficientnet_lite0"
    weights: str = "offline"          # offline | hub | none | path to a weight file
    freeze: bool = True               # frozen backbone -> trains on cached features
    head: str = "mlp"
    head_kwargs: dict = field(default_factory=dict)
    pooling: str = "meanstd"          # frozen path: avg | meanstd | meanstd+avg
    scales: tuple = (1.0, 0.5)        # frozen path: image scales
    feature_short: int | None = None  # frozen path: resize before the crop
    feature_crop: int | None = 384    # frozen path: centre crop
    feature_max_short: int | None = None  # frozen path: shrink larger images to this short side
    train_tail: int = 0               # frozen path: train the backbone's last N blocks (CPU)
    tail_flip: bool = False           # train_tail: mirror half the cached maps in training
    tail_crop: float | None = None    # train_tail: keep a random window of this side fraction


@dataclass
class MethodConfig:
    """The alignment method (see ``mixiqa.methods``) and its knobs."""

    name: str = "monotonic"
    domain: str = "dataset"           # SIND alignment / domain sampling: dataset | scene
    mapper_kwargs: dict = field(default_factory=dict)
    loss_weights: dict = field(default_factory=dict)   # override the method's defaults
    loss_options: dict = field(default_factory=dict)   # {loss: {option: value}}, e.g. sind beta


@dataclass
class TrainConfig:
    """Optimisation. Defaults suit the frozen-feature path on a CPU."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    backbone_lr_mult: float = 0.1     # backbone lr = lr * this (fine-tuning)
    # layer-wise decay: backbone blocks.i train at the backbone lr x layer_decay ** (number of
    # trainable blocks after i); 1.0 = one rate for the whole backbone
    layer_decay: float = 1.0
    # exponential moving average of the trained weights, updated after every optimizer step
    # with this decay (SIND's reference: 0.99); validation, the last epoch and the saved
    # model then use the averaged weights. 0 = off (plain weights, the committed numbers)
    ema: float = 0.0
    weight_decay: float = 1e-4
    scheduler: str = "cosine"         # cosine | step | none
    step_size: int = 5
    gamma: float = 0.8
    warmup_epochs: int = 0
    # per-dataset share of each batch: equal | proportional | counts, one per dataset
    quotas: str | list = "equal"
    seed: int = 0
    device: str = "auto"              # auto | cpu | cuda
    amp: bool = True                  # mixed precision where a GPU is present
    # bf16 autocast for training on a CPU (not evaluation): ~2x for model.train_tail on a CPU
    # with native bf16 (AVX512-BF16 / AMX); off by default, the committed CPU numbers are fp32
    cpu_amp: bool = False
    compile: bool = False             # torch.compile where a GPU is present
    workers: int = 2
    # fine-tuning: decode every image once and keep it on the training device, cutting the
    # random crops there (mixiqa.data.preload); on a GPU the decoding workers are the limit
    preload: bool = False
    train_short: int = 512            # fine-tuning: resize short side, then random crop
    train_crop: int = 384
    test_short: int = 768
    eval_every: int = 1
    checkpoint_seconds: float = 30.0  # checkpoint at most this often (and after the last epoch)
    threads: int | None = None        # torch CPU threads while training (None: torch's default)
    # splits trained at once (cached features on a CPU): an int, or "auto" = one per CPU core
    jobs: int | str = 1
    cache_dir: str | None = None


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    datasets: list = field(default_factory=list)      # list[DataConfig]
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(_plain(self.to_dict()), sort_keys=False))


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _build(cls, data: dict, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}.")
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        import difflib

        hints = [f"'{u}' (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(u, names, 1))
                 else f"'{u}'" for u in sorted(unknown)]
        raise ConfigError(f"{where}: unknown key(s) {', '.join(hints)}. Known: {sorted(names)}.")
    hints = get_type_hints(cls)
    kwargs = {}
    for k, v in data.items():
        t = hints[k]
        if dataclasses.is_dataclass(t):
            v = _build(t, v, f"{where}.{k}")
        elif t is tuple and isinstance(v, (list, tuple)):
            v = tuple(v)
        kwargs[k] = v
    return cls(**kwargs)


def config_from_dict(data: dict) -> ExperimentConfig:
    data = dict(data)
    datasets = data.pop("datasets", [])
    cfg = _build(ExperimentConfig, data, "config")
    cfg.datasets = [_build(DataConfig, d, f"datasets[{i}]") for i, d in enumerate(datasets)]
    if not cfg.datasets:
        raise ConfigError("config: 'datasets' is empty; list at least one {name, root}.")
    _check_values(cfg)
    return cfg


def _check_values(cfg: ExperimentConfig) -> None:
    """Values a run would only trip over after feature extraction: refuse them up front."""
    jobs = cfg.train.jobs
    if jobs != "auto" and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"train.jobs must be a positive integer or 'auto', got {jobs!r}.")
    tail = cfg.model.train_tail
    if isinstance(tail, bool) or not isinstance(tail, int) or tail < 0:
        raise ConfigError(f"model.train_tail must be a whole number of blocks >= 0, got {tail!r}.")
    if tail and (not cfg.model.freeze or cfg.model.pooling != "meanstd"):
        raise ConfigError("model.train_tail trains the last blocks of a frozen backbone on "
                          "cached inputs: it needs freeze: true and pooling: meanstd (with "
                          "freeze: false the whole backbone trains anyway).")
    if not isinstance(cfg.model.tail_flip, bool):
        raise ConfigError(f"model.tail_flip must be true or false, got {cfg.model.tail_flip!r}.")
    if cfg.model.tail_flip and not tail:
        raise ConfigError("model.tail_flip mirrors the cached maps of model.train_tail; set "
                          "train_tail: 1 (or more) with it, or leave tail_flip false.")
    crop = cfg.model.tail_crop
    if crop is not None:
        if isinstance(crop, bool) or not isinstance(crop, (int, float)) or not 0 < crop <= 1:
            raise ConfigError(f"model.tail_crop must be a fraction in (0, 1] of the cached "
                              f"map's side (e.g. 0.75), or null; got {crop!r}.")
        if not tail:
            raise ConfigError("model.tail_crop crops the cached maps of model.train_tail; set "
                              "train_tail: 1 (or more) with it, or leave tail_crop null.")
    _check_quotas(cfg)
    _check_loss_weights(cfg)
    _check_loss_options(cfg)
    decay = cfg.train.layer_decay
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
        raise ConfigError(f"train.layer_decay must be a number in (0, 1], got {decay!r} "
                          "(1.0: one learning rate for the whole backbone).")
    if decay < 1 and cfg.model.freeze and not tail:
        raise ConfigError(f"train.layer_decay {decay} scales the rates of trained backbone "
                          "blocks, and this backbone is frozen: set model.train_tail: 2 (or "
                          "more) or model.freeze: false with it, or leave layer_decay at 1.0.")
    ema = cfg.train.ema
    if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0 <= ema < 1:
        raise ConfigError(f"train.ema must be a decay in [0, 1) (e.g. 0.99; 0 turns the "
                          f"weight average off), got {ema!r}.")
    if not isinstance(cfg.train.preload, bool):
        raise ConfigError(f"train.preload must be true or false, got {cfg.train.preload!r}.")
    if cfg.train.preload and (cfg.model.freeze or not cfg.train.train_crop):
        raise ConfigError("train.preload keeps the images of a fine-tuned backbone on the "
                          "device and cuts random crops there: it needs model.freeze: false "
                          "and a train_crop (a frozen backbone caches its features instead).")
    cap = cfg.model.feature_max_short
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ConfigError(f"model.feature_max_short must be a positive number of pixels or "
                          f"null, got {cap!r}.")


def _check_quotas(cfg: ExperimentConfig) -> None:
    q, b = cfg.train.quotas, cfg.train.batch_size
    from mixiqa.methods import METHODS

    if q == "equal":
        return
    m = cfg.method.name
    if cfg.method.domain != "dataset" and m in METHODS and METHODS.get(m).sampler == "domain":
        raise ConfigError(f"train.quotas {q!r} shares batches between datasets, and "
                          f"method.domain {cfg.method.domain!r} draws 2 of its domains x n "
                          "images per batch; leave quotas: equal with it.")
    if q == "proportional":
        return
    if not isinstance(q, list) or not all(isinstance(x, int) and x >= 1 for x in q) \
            or sum(q) != b:
        raise ConfigError(f"train.quotas must be 'equal', 'proportional' or a list of image "
                          f"counts per dataset (at least 1 each) summing to batch_size {b}; "
                          f"got {q!r}.")


def _check_loss_weights(cfg: ExperimentConfig) -> None:
    """A weight is a number, or ``{dataset: number}`` for a loss weighed per dataset."""
    from mixiqa.methods import DATASET_WEIGHTED_LOSSES  # imports nothing of the config

    names = [d.name for d in cfg.datasets]
    for loss, w in cfg.method.loss_weights.items():
        if not isinstance(w, dict):
            continue
        if loss not in DATASET_WEIGHTED_LOSSES:
            raise ConfigError(f"method.loss_weights.{loss} is one term over the whole batch; "
                              f"give it one number (per-dataset weights are for "
                              f"{', '.join(DATASET_WEIGHTED_LOSSES)}).")
        unknown = sorted(set(w) - set(names))
        if unknown:
            raise ConfigError(f"method.loss_weights.{loss} names {unknown}, which are not "
                              f"among this config's datasets {names}.")


def _check_loss_options(cfg: ExperimentConfig) -> None:
    """``method.loss_options`` names losses that take options, and options they take."""
    from mixiqa.losses import OPTION_LOSSES
    from mixiqa.methods import METHODS

    name = cfg.method.name
    used = {**METHODS.get(name).losses, **cfg.method.loss_weights} if name in METHODS else None
    for loss, opts in cfg.method.loss_options.items():
        if loss not in OPTION_LOSSES:
            raise ConfigError(f"method.loss_options.{loss}: no such loss with options; "
                              f"options are for {', '.join(OPTION_LOSSES)}.")
        if used is not None and loss not in used:
            raise ConfigError(f"method.loss_options.{loss}: method '{name}' has no {loss} "
                              f"loss (its losses: {', '.join(used)}); add it with "
                              f"method.loss_weights or drop the option.")
        if not isinstance(opts, dict) or set(opts) - set(OPTION_LOSSES[loss]):
            raise ConfigError(f"method.loss_options.{loss} must map option names to values, "
                              f"among {list(OPTION_LOSSES[loss])}; got {opts!r}.")
        for k, v in opts.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"method.loss_options.{loss}.{k} must be a number >= 0, "
                                  f"got {v!r}.")
        if loss == "sind":
            from mixiqa.losses import check_sind_options

            try:
                check_sind_options(**{k: v for k, v in opts.items() if k != "eps"})
            except ValueError as e:
                raise ConfigError(f"method.loss_options.sind {opts!r}: {e}") from None


def load_config(path: str | Path, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML or TOML experiment file, then apply ``key.sub=value`` overrides.

    Relative dataset roots are resolved against the config file's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file '{path}' not found. See configs/ for examples.")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()} ({e}).") from e
    for o in overrides:
        apply_override(data, o)
    for d in data.get("datasets", []):
        root = Path(str(d.get("root", ""))).expanduser()
        if not root.is_absolute():
            d["root"] = str((path.parent / root).resolve())
    return config_from_dict(data)


def parse_key_value(text: str, what: str = "Override",
                    example: str = "train.epochs=5") -> tuple[str, Any]:
    """``"train.epochs=5"`` -> ``("train.epochs", 5)``: the value read as YAML, so numbers,
    booleans and lists come out typed and anything else stays a string. Shared by config
    overrides, ``mixiqa bench --set`` and the CLI's ``--option``."""
    if "=" not in text:
        raise ConfigError(f"{what} '{text}' must look like KEY=VALUE, e.g. {example}.")
    key, value = text.split("=", 1)
    if not key.strip():
        raise ConfigError(f"{what} '{text}' has no key before '='; e.g. {example}.")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} '{text}': the value is not valid YAML ({e}).") from e


def apply_override(data: dict, override: str) -> None:
    """``train.epochs=5`` -> data["train"]["epochs"] = 5 (values parsed as YAML)."""
    key, value = parse_key_value(override)
    node = data
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def dump_json(obj: Any) -> str:
    return json.dumps(_plain(obj), indent=1, default=str)


def quickstart_recipe() -> dict:
    """The CPU quickstart's model, method and training (configs/quickstart.yaml), for code
    that builds configs without the repository's configs/ folder (demo, synth)."""
    return {
        "model": {"backbone": "efficientnet_lite0", "weights": "offline", "freeze": True,
                  "pooling": "meanstd", "scales": [1.0, 0.5], "feature_short": 256,
                  "feature_crop": 224, "head": "mlp",
                  "head_kwargs": {"hidden": [256], "dropout": 0.2}},
        "method": {"name": "monotonic"},
        "train": {"epochs": 40, "batch_size": 64, "lr": 0.001, "weight_decay": 0.0001,
                  "scheduler": "cosine", "quotas": "equal", "workers": 0, "threads": 1,
                  "jobs": "auto"},
    }
