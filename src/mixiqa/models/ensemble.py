"""Several trained models scored as one: the mean of their scores on each dataset's scale.

Two models trained on the same data with different recipes make different errors; their
mean ranks better than either (benchmarks/real.md, "One trained block averaged with two").
Their proxy qualities q live on different learned scales, so the mean is taken where they
agree on units: after each member's own mapper, on a dataset's score scale. An ensemble's
own q is that mean on its reference dataset's scale (the shipped model: CLIVE's MOS).

On disk an ensemble is a folder with ``model.json`` (format ``mixiqa-ensemble``) naming
member folders, each an ordinary model folder (:func:`mixiqa.models.iqa.save_model`).
Members must read images the same way (backbone, feature recipe, test size) so every image
is decoded once; when they are frozen-feature models on one EfficientNet that differ only in
their trained last blocks (``model.train_tail``), the blocks they share run once per image.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from torch import nn

from mixiqa.errors import ConfigError, DataError
from mixiqa.features import FeatureSpec, at_scale
from mixiqa.models.iqa import ENSEMBLE_FORMAT as FORMAT
from mixiqa.models.iqa import (IQAModel, ScoresFiles, load_model, read_meta,
                               resolve_model_folder, save_model, tail_prefixes)

FORMAT_VERSION = 1
SAME_INPUT = ("features", "eval")      # meta entries every member must share


class EnsembleModel(ScoresFiles, nn.Module):
    """Members' scores averaged on a dataset's scale.

    Args:
        members: Loaded models trained on the same datasets.
        meta: ``reference`` (the dataset whose scale q is on), optional ``output``
            (scale and clip of ``mixiqa score``), and what the file recorded.
    """

    def __init__(self, members: list[IQAModel], meta: dict):
        super().__init__()
        if len(members) < 2:
            raise ConfigError(f"An ensemble needs at least two models, got {len(members)}.")
        datasets = [sorted(m.datasets) for m in members]
        if any(d != datasets[0] for d in datasets):
            raise ConfigError(f"Ensemble members were trained on different datasets "
                              f"({datasets}); average only models with the same mappers.")
        for key in SAME_INPUT:
            if any(m.meta.get(key) != members[0].meta.get(key) for m in members):
                raise ConfigError(f"Ensemble members read images differently ('{key}' "
                                  "differs); average only models with the same input recipe.")
        self.members = nn.ModuleList(members)
        self.reference = meta.get("reference") or members[0].datasets[0]
        self.check_dataset(self.reference)
        first = members[0].meta
        self.meta = {**meta, "reference": self.reference,
                     **{k: first[k] for k in SAME_INPUT if k in first}}
        self.shared_start = _shared_start(members)

    @property
    def datasets(self) -> list[str]:
        return self.members[0].datasets

    @property
    def backbone(self):
        """The image backbone of the first member (its normalisation sets the input)."""
        return self.members[0].backbone

    def check_dataset(self, dataset: str) -> None:
        self.members[0].check_dataset(dataset)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> q (B,): the mean on the reference dataset's scale."""
        return self.predict(images, self.reference)

    def predict(self, images: torch.Tensor, scale: str | None = None) -> torch.Tensor:
        """Images (B, 3, H, W) -> (B,) mean of the members' scores on ``scale``'s dataset
        (None: the reference dataset, which is the ensemble's q)."""
        scale = scale or self.reference
        self.check_dataset(scale)
        qs = self._member_q(images)                                     # M x (B,)
        return torch.stack([m.to_dataset_scale(q, scale)
                            for m, q in zip(self.members, qs)]).mean(0)

    def _member_q(self, images: torch.Tensor) -> list[torch.Tensor]:
        if self.shared_start is None:
            return [m(images) for m in self.members]
        spec = FeatureSpec(**self.meta["features"])
        feats = _shared_features(list(self.members), images, spec, self.shared_start)
        return [m.forward_features(f) for m, f in zip(self.members, feats)]

    @torch.no_grad()
    def translate(self, scores: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        """The members' translations of ``scores`` from ``src``'s scale to ``dst``'s, averaged."""
        return torch.stack([m.translate(scores, src, dst) for m in self.members]).mean(0)

    def to_dataset_scale(self, q: torch.Tensor, dataset: str) -> torch.Tensor:
        raise ConfigError("An ensemble maps images, not one q, to a dataset's scale: use "
                          "predict(images, dataset) or score(paths, scale=dataset).")


# ---- the blocks the members share, run once --------------------------------------------

def _shared_start(members: list[IQAModel]) -> int | None:
    """First block index that differs between members whose pooled features come from one
    EfficientNet (frozen path, ``meanstd``); None when the members run separately."""
    spec = members[0].meta.get("features") or {}
    if (any(m.feature_norm is None or m.backbone is None for m in members)
            or spec.get("pooling") != "meanstd" or spec.get("tail")
            or not all(hasattr(getattr(m.backbone, "model", None), "blocks") for m in members)
            or len({m.backbone.name for m in members}) != 1):
        return None
    from mixiqa.models.tail import stage_blocks

    if stage_blocks(members[0].backbone) is None:    # stages must be block outputs
        return None
    states = [m.backbone.model.state_dict() for m in members]
    stem = [k for k in states[0] if not k.startswith(("blocks.", "conv_head.", "bn2."))]
    if any(not torch.equal(s[k], states[0][k]) for s in states[1:] for k in stem):
        return None
    n = len(members[0].backbone.model.blocks)
    for i in range(n):
        keys = [k for k in states[0] if k.startswith(f"blocks.{i}.")]
        if any(not torch.equal(s[k], states[0][k]) for s in states[1:] for k in keys):
            return i
    return n


def _shared_features(members: list[IQAModel], images: torch.Tensor, spec: FeatureSpec,
                     start: int) -> list[torch.Tensor]:
    """Each member's ``compute_features`` (M x (B, D)), blocks before ``start`` run once:
    per scale, the stages' mean and std in stage order, as :func:`pool_features` gives."""
    from mixiqa.models.tail import pool_blocks, stage_blocks, trunk

    bb = members[0].backbone
    stages = stage_blocks(bb)
    outs: list[list[torch.Tensor]] = [[] for _ in members]
    with torch.inference_mode():
        for s in spec.scales:
            fixed, h = trunk(bb, at_scale(images, s), {"start": start, "stages": stages})
            for out, m in zip(outs, members):
                out += [fixed, *pool_blocks(m.backbone.model.blocks, h, start, stages)]
    return [torch.cat(o, 1).float() for o in outs]


# ---- files ----------------------------------------------------------------------------

def save_ensemble(members: list[IQAModel], folder: str | Path, meta: dict,
                  member_meta: list[dict] | None = None) -> Path:
    """Write ``folder/member_N`` (one model folder each) and ``folder/model.json``.

    Args:
        meta: The ensemble's own entries (``reference``, ``output``, notes).
        member_meta: Per member, extra JSON stored in the ensemble's file beside its folder
            name (e.g. the recipe it was trained with).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (m, extra) in enumerate(zip(members, member_meta or [{}] * len(members))):
        name = f"member_{i}"
        shutil.rmtree(folder / name, ignore_errors=True)
        save_model(m, folder / name)
        entries.append({"folder": name, **extra})
    doc = {**meta, "format": FORMAT, "format_version": FORMAT_VERSION, "members": entries}
    tmp = folder / f".model.{os.getpid()}.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, folder / "model.json")     # last: a half-written ensemble has no index
    return folder


def member_from_run(run: str | Path) -> tuple[IQAModel, dict]:
    """A trained model, ready to save again, and its recipe: ``{"run": path}`` plus, when the
    run folder has one, ``"config"``: its config as this version reads it (dataset names
    only, not this machine's paths)."""
    from mixiqa.config import load_config

    folder = resolve_model_folder(Path(run))
    meta = read_meta(folder)
    if meta["format"] == FORMAT:
        raise ConfigError(f"'{run}' is an ensemble already; give its member folders instead.")
    # trained tail blocks or a fine-tuned backbone are in the file: load them to save them
    model = load_model(folder, with_backbone=bool(tail_prefixes(meta))
                       or bool(meta.get("backbone_in_file")))
    model.meta.pop("output", None)          # the ensemble's own output scale applies
    recipe: dict = {"run": str(run)}
    configs = [p / "config.yaml" for p in (folder, *folder.parents[:3])
               if (p / "config.yaml").is_file()]
    if configs:
        cfg = load_config(configs[0]).to_dict()
        recipe["config"] = {**cfg, "datasets": [d["name"] for d in cfg["datasets"]]}
    return model, recipe


def make_ensemble(runs: list[str | Path], folder: str | Path, reference: str | None = None,
                  output: dict | None = None, need_config: bool = False) -> Path:
    """Average trained runs (or model folders) into an ensemble folder.

    Args:
        reference: The dataset whose scale the ensemble's q is on (default: the first
            member's first dataset).
        output: ``{"scale": dataset, "clip": [lo, hi] or None}``: what ``mixiqa score``
            reports by default (None: q).
        need_config: Refuse a member without the run's ``config.yaml`` (its recipe).
    """
    members, recipes = zip(*(member_from_run(r) for r in runs))
    for run, recipe in zip(runs, recipes):
        if need_config and "config" not in recipe:
            raise DataError(f"No config.yaml in or above '{run}': give a folder written by "
                            "`mixiqa train`, so the model's recipe goes with it.")
    meta = {"reference": reference or members[0].datasets[0]}
    meta.update({"output": output} if output else {})
    EnsembleModel(list(members), meta)           # the checks, before anything is written
    return save_ensemble(list(members), folder, meta, list(recipes))


def load_ensemble(folder: str | Path, meta: dict, with_backbone: bool = True,
                  device: str = "cpu") -> EnsembleModel:
    """The ensemble whose ``model.json`` (already read: ``meta``) is in ``folder``."""
    folder = Path(folder)
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(f"'{folder}' is a newer ensemble format ({meta['format_version']}); "
                        "update mixiqa to load it.")
    entries = meta.get("members") or []
    missing = [e["folder"] for e in entries if not (folder / e["folder"] / "model.json").is_file()]
    if missing or not entries:
        raise DataError(f"Ensemble '{folder}' lacks its member folders {missing or '(none)'}; "
                        "was it copied without them?")
    members = [load_model(folder / e["folder"], with_backbone=with_backbone) for e in entries]
    return EnsembleModel(members, meta).to(device).eval()
