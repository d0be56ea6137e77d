"""Settings of Re-IQA quality-aware contrastive pretraining (``mixiqa pretrain``).

A flat YAML file (see ``configs/reiqa_pretrain.yaml``) read with ``yaml.safe_load`` and
``key=value`` overrides; an unknown key is an error with a "did you mean".
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from mixiqa.config import apply_override
from mixiqa.errors import ConfigError

# Settings that may differ between a run and its resumption: they change neither the
# batches nor the arithmetic (workers only move the decoding to other processes).
RESUMABLE_CHANGES = ("workers", "device", "checkpoint_every")


@dataclass
class PretrainConfig:
    """MoCo-v2 with Re-IQA's quality-aware views.

    The paper's sizes (ResNet-50, 12 versions x 2 scales per image, queue 65536) are far
    beyond a CPU; the defaults keep its recipe at a size a 2-core CPU runs in about 30
    minutes (see ``configs/reiqa_pretrain.yaml``).

    Attributes:
        backbone: Backbone name for :func:`create_backbone` (a CNN).
        weights: Its starting weights (``offline``: ImageNet weights shipped in a package).
        crop: Side of each crop, pixels (Re-IQA: 160).
        scales: Image scales each version is viewed at (Re-IQA: full and half).
        image_short: Resize each source image's short side to this before distorting
            (None: native resolution; smaller is faster).
        batch_images: Source images per step.
        versions: Versions per image: the pristine one plus ``versions - 1`` distorted.
        compose_prob: Chance that a distorted version has a second distortion on top.
        overlap: Range of the fraction of a crop that its positive partner covers.
        proj_hidden: Hidden width of the projection MLP (None: the backbone's width).
        proj_dim: Output width of the projection MLP (Re-IQA: 128).
        queue: Number of negative keys kept from earlier steps (Re-IQA: 65536).
        momentum: Momentum of the key encoder's weight average.
        temperature: Softmax temperature of the InfoNCE loss.
        lr: Peak learning rate of SGD (momentum 0.9), cosine-decayed to 0 over ``steps``.
        weight_decay: SGD weight decay.
        warmup_steps: Linear learning-rate warm-up.
        steps: Optimiser steps in all.
        freeze_bn: Keep BatchNorm statistics fixed: small CPU batches give noisy batch
            statistics, and fixed ones cannot leak the positive key through the batch.
        checkpoint_every: Write ``checkpoint.pt`` every this many steps (and at the end).
        seed: Seeds the projection head, the queue and every view.
        device: ``auto`` (a GPU when present), ``cpu`` or ``cuda``.
        workers: Processes that decode and distort images while the model runs.
    """

    backbone: str = "efficientnet_lite0"
    weights: str = "offline"
    crop: int = 160
    scales: tuple = (1.0, 0.5)
    image_short: int | None = None
    batch_images: int = 2
    versions: int = 4
    compose_prob: float = 0.2
    overlap: tuple = (0.1, 0.3)
    proj_hidden: int | None = None
    proj_dim: int = 128
    queue: int = 1024
    momentum: float = 0.999
    temperature: float = 0.2
    lr: float = 0.01
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    steps: int = 400
    freeze_bn: bool = True
    checkpoint_every: int = 25
    seed: int = 0
    device: str = "auto"
    workers: int = 2

    def __post_init__(self) -> None:
        self.scales, self.overlap = tuple(self.scales), tuple(self.overlap)
        checks = {
            "crop": self.crop >= 32, "batch_images": self.batch_images >= 1,
            "versions": self.versions >= 1, "queue": self.queue >= 0,
            "steps": self.steps >= 1, "checkpoint_every": self.checkpoint_every >= 1,
            "temperature": self.temperature > 0, "momentum": 0 <= self.momentum < 1,
            "compose_prob": 0 <= self.compose_prob <= 1, "workers": self.workers >= 0,
            "scales": bool(self.scales) and all(0 < s <= 1 for s in self.scales),
            "overlap": len(self.overlap) == 2 and 0 < self.overlap[0] <= self.overlap[1] <= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"pretrain config: invalid {', '.join(bad)} "
                              f"({', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}); "
                              "see the attribute docs of mixiqa.pretrain.config.PretrainConfig.")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def pretrain_config_from_dict(data: dict | None, where: str = "pretrain config") -> PretrainConfig:
    """Build a :class:`PretrainConfig`; an unknown key raises ConfigError naming it."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of settings, got {type(data).__name__}.")
    names = [f.name for f in fields(PretrainConfig)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        hints = [f"'{u}' (did you mean '{m[0]}'?)" if (m := difflib.get_close_matches(u, names, 1))
                 else f"'{u}'" for u in unknown]
        raise ConfigError(f"{where}: unknown key(s) {', '.join(hints)}. Known: {names}.")
    try:
        return PretrainConfig(**data)
    except TypeError as e:  # e.g. a list where a number belongs
        raise ConfigError(f"{where}: {e}. See configs/reiqa_pretrain.yaml.") from e


def load_pretrain_config(path: str | Path, overrides: list[str] = ()) -> PretrainConfig:
    """Read a YAML pretraining file, then apply ``key=value`` overrides (values as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Pretrain config '{path}' not found; start from "
                          "configs/reiqa_pretrain.yaml.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}).") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level.")
    for o in overrides:
        apply_override(data, o)
    return pretrain_config_from_dict(data, str(path))


def check_resumable(saved: dict, cfg: PretrainConfig) -> None:
    """Raise ConfigError when ``cfg`` differs from a checkpoint's config in what matters."""
    now = cfg.to_dict()
    diff = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diff:
        what = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ConfigError(f"--resume with a changed config ({what}); resume with the "
                          "run's own config.yaml, or start a new --out.")
