"""The full model: backbone -> head -> proxy quality q, plus one mapper per training set.

At evaluation and inference only backbone + head run; q is the quality. The mappers carry
q onto any training dataset's own scale (g_k(q)) and, being monotone, back again, which is
what score translation between datasets uses. A model file is safetensors + JSON: loading
it never unpickles.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from mixiqa.errors import ConfigError, DataError

if TYPE_CHECKING:
    from mixiqa.models.ensemble import EnsembleModel

FORMAT = "mixiqa-model"
FORMAT_VERSION = 1
ENSEMBLE_FORMAT = "mixiqa-ensemble"     # a folder of member models (mixiqa.models.ensemble)


@dataclass
class ScoreScale:
    """How one dataset's raw scores relate to the training targets of its mapper.

    ``rescaled`` targets are ``10 * (score - lo) / (hi - lo)``, flipped for DMOS sets so that
    higher is better; ``zscore`` targets are ``(score - mean) / std`` of the training split
    (stored as lo = mean, hi = mean + std), negated for DMOS; ``raw`` targets are the scores.
    """

    dataset: str
    kind: str              # raw | rescaled | zscore
    lo: float              # training-split minimum (rescaled) or theoretical minimum
    hi: float
    higher_better: bool
    score_min: float       # theoretical range, for reports and the range prior
    score_max: float

    def to_target(self, score: torch.Tensor) -> torch.Tensor:
        if self.kind == "raw":
            return score
        if self.kind == "zscore":   # lo = training mean, hi = mean + std
            z = (score - self.lo) / (self.hi - self.lo)
            return z if self.higher_better else -z
        t = 10.0 * (score - self.lo) / (self.hi - self.lo)
        return t if self.higher_better else 10.0 - t

    def to_score(self, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "raw":
            return target
        if self.kind == "zscore":
            z = target if self.higher_better else -target
            return self.lo + z * (self.hi - self.lo)
        t = target if self.higher_better else 10.0 - target
        return self.lo + t * (self.hi - self.lo) / 10.0

    def target_scale(self) -> float:
        """d(target)/d(score) magnitude: turns a score std into a target std."""
        if self.kind == "raw":
            return 1.0
        return (1.0 if self.kind == "zscore" else 10.0) / (self.hi - self.lo)


class FeatureNorm(nn.Module):
    """Standardises cached feature vectors with statistics of the training split."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: torch.Tensor) -> "FeatureNorm":
        self.mean.copy_(x.mean(0))
        # floor at 1% of the mean std: a feature that is (nearly) constant on the training
        # images must not turn a small change at test time into a huge input
        sd = x.std(0)
        self.std.copy_(sd.clamp_min(max(0.01 * float(sd.mean()), 1e-6)))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, D)
        return (x - self.mean) / self.std


class ScoresFiles:
    """``score(paths)`` for a model with ``predict(images, scale)`` (one or an ensemble)."""

    def score(self, images, scale: str | None = None, batch_size: int = 16,
              workers: int = 0) -> list[float | None]:
        """Quality of image files (paths), higher is better; None for undecodable files.

        Args:
            images: A path or a list of paths.
            scale: A training dataset's name for its scale, ``"q"`` for the model's quality
                q; None for the model's output scale (the shipped model: CLIVE, 0-100),
                else q.
        """
        from mixiqa.score import iter_scores

        one = isinstance(images, (str, os.PathLike))
        paths = [str(images)] if one else [str(p) for p in images]
        device = next(self.parameters()).device.type
        return [r.score for r in iter_scores(self, paths, batch_size, workers, scale, device,
                                             show_progress=False)]


class IQAModel(ScoresFiles, nn.Module):
    """Shared regressor f (backbone + head) and per-dataset mappers g_k.

    Args:
        head: Maps backbone output (or cached feature vectors) to q, shape (B,).
        mappers: Dataset name -> mapper module.
        scales: Dataset name -> :class:`ScoreScale`.
        meta: JSON-able description (backbone, head, feature recipe, method) that
            :func:`load_model` rebuilds the modules from.
        backbone: The image backbone; None while training on cached features.
        feature_norm: Standardiser of cached features (frozen-feature path).
    """

    def __init__(self, head: nn.Module, mappers: dict[str, nn.Module],
                 scales: dict[str, ScoreScale], meta: dict,
                 backbone: nn.Module | None = None, feature_norm: FeatureNorm | None = None):
        super().__init__()
        self.backbone = backbone
        self.feature_norm = feature_norm
        self.head = head
        self.mappers = nn.ModuleDict(mappers)
        self.scales = scales
        self.meta = meta

    @property
    def datasets(self) -> list[str]:
        return list(self.mappers.keys())

    def forward_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Cached feature vectors (B, D) -> proxy quality q (B,)."""
        return self.forward_normalized(self.feature_norm(feats))

    def forward_normalized(self, z: torch.Tensor) -> torch.Tensor:
        """Already standardised feature vectors (B, D) -> q (B,): training normalises a
        split's cached features once instead of at every step."""
        return self.head(z).reshape(-1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> proxy quality q (B,)."""
        if self.backbone is None:
            raise ConfigError("This model holds no backbone; attach one with load_model().")
        if self.feature_norm is not None:  # frozen path: pooled features, then the head
            from mixiqa.features import compute_features, FeatureSpec

            spec = FeatureSpec(**self.meta["features"])
            return self.forward_features(compute_features(self.backbone, images, spec))
        features, embedding = self.backbone(images)   # map/tokens, and CLIP's embedding
        return self.head(features, embedding).reshape(-1)

    def predict(self, images: torch.Tensor, scale: str | None = None) -> torch.Tensor:
        """Images (B, 3, H, W) -> (B,) quality on ``scale``'s dataset (None: q)."""
        q = self(images)
        return q if scale is None else self.to_dataset_scale(q, scale)

    def check_dataset(self, dataset: str) -> None:
        """A clear error, before any work, when the model has no mapper for ``dataset``."""
        self.mapper(dataset)

    def mapper(self, dataset: str) -> nn.Module:
        if dataset not in self.mappers:
            raise ConfigError(f"No mapper for dataset '{dataset}': this model was trained on "
                              f"{', '.join(self.datasets)}.")
        return self.mappers[dataset]

    def to_dataset_scale(self, q: torch.Tensor, dataset: str) -> torch.Tensor:
        """Proxy q -> dataset's own raw score scale: score_k = unscale(g_k(q))."""
        return self.scales[dataset].to_score(self.mapper(dataset)(q))

    def from_dataset_scale(self, score: torch.Tensor, dataset: str) -> torch.Tensor:
        """Dataset's raw score -> proxy q, through the inverse of its monotone mapper."""
        m = self.mapper(dataset)
        if not getattr(m, "invertible", False):
            raise ConfigError(f"The '{type(m).__name__}' mapper of '{dataset}' is not "
                              "invertible; train with an invertible mapper (mimi, monotonic, "
                              "affine, logistic, sind) to translate scores.")
        return m.inverse(self.scales[dataset].to_target(score))

    @torch.no_grad()
    def translate(self, scores: torch.Tensor, src: str, dst: str) -> torch.Tensor:
        """Score on dataset ``src``'s scale -> the same quality on ``dst``'s scale.

        Reference: MIMI (IJCV 2025): MOS_j = g_j(g_k^-1(MOS_k)).
        """
        return self.to_dataset_scale(self.from_dataset_scale(scores, src), dst)


# ---- files: safetensors + JSON -------------------------------------------------------

def save_model(model: IQAModel, folder: str | Path, include_backbone: bool | None = None) -> Path:
    """Write ``model.safetensors`` and ``model.json`` atomically into ``folder``.

    The backbone's weights are included when it was fine-tuned; a frozen backbone is
    rebuilt from its named weight source (e.g. the offline EfficientNet package) instead.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if include_backbone is None:
        include_backbone = not model.meta.get("backbone", {}).get("frozen", True)
    tail = tail_prefixes(model.meta)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
             if include_backbone or not k.startswith("backbone.") or k.startswith(tail)}
    if tail and not any(k.startswith(tail) for k in state):
        raise ConfigError("This model's trained backbone blocks are not in it (loaded with "
                          "with_backbone=False?); load it with its backbone to save it.")
    meta = {**model.meta, "format": FORMAT, "format_version": FORMAT_VERSION,
            "backbone_in_file": include_backbone,
            "scales": {k: asdict(s) for k, s in model.scales.items()}}
    tmp = folder / f".model.{os.getpid()}.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / "model.safetensors")
    tmp.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    os.replace(tmp.with_suffix(".json"), folder / "model.json")
    return folder


def tail_prefixes(meta: dict) -> tuple[str, ...]:
    """State-dict prefixes of backbone blocks trained with ``model.train_tail``: stored in
    the model file over the backbone's named weights."""
    blocks = (meta.get("backbone") or {}).get("tail_blocks") or ()
    return tuple(f"backbone.model.blocks.{i}." for i in blocks)


def read_meta(folder: str | Path) -> dict:
    folder = Path(folder)
    path = folder / "model.json" if folder.is_dir() else folder.with_suffix(".json")
    if not path.is_file():
        raise DataError(f"No model at '{folder}': expected model.json and model.safetensors "
                        "(as written by `mixiqa train`).")
    meta = json.loads(path.read_text())
    if meta.get("format") not in (FORMAT, ENSEMBLE_FORMAT):
        raise DataError(f"'{path}' is not a mixiqa model file (format {meta.get('format')!r}).")
    return meta


def build_model(meta: dict, scales: dict[str, ScoreScale], with_backbone: bool = True) -> IQAModel:
    """Modules from a description: ``meta`` holds backbone, head, mappers and features."""
    from mixiqa.models.heads import create_head
    from mixiqa.models.mappers import create_mapper

    backbone = None
    if with_backbone:  # timm is imported only when a backbone is wanted (a slow import)
        from mixiqa.models.backbones import create_backbone

        backbone = create_backbone(meta["backbone"]["name"], weights=meta["backbone"]["weights"])
    frozen_path = meta.get("features") is not None
    head = create_head(meta["head"]["name"], meta["head"]["in_features"],
                       **meta["head"].get("kwargs", {}))
    mappers = {k: create_mapper(m["name"], **m.get("config", {}))
               for k, m in meta["mappers"].items()}
    norm = FeatureNorm(meta["head"]["in_features"]) if frozen_path else None
    return IQAModel(head, mappers, scales, meta, backbone=backbone, feature_norm=norm)


def load_model(path: str | Path | None = None, with_backbone: bool = True,
               device: str = "cpu") -> IQAModel | EnsembleModel:
    """Load a model folder written by :func:`save_model` (no unpickling: safetensors + JSON),
    or an ensemble of such folders (:mod:`mixiqa.models.ensemble`).

    Args:
        path: The run or model folder; None loads the default model shipped with mixiqa.
        with_backbone: Also build the image backbone (not needed on cached features).
        device: Where to put the model.
    """
    from safetensors.torch import load_file

    if path is None:
        path = default_model_path()
    folder = resolve_model_folder(Path(path))
    meta = read_meta(folder)
    if meta["format"] == ENSEMBLE_FORMAT:
        from mixiqa.models.ensemble import load_ensemble

        return load_ensemble(folder, meta, with_backbone=with_backbone, device=device)
    scales = {k: ScoreScale(**s) for k, s in meta.pop("scales").items()}
    model = build_model(meta, scales, with_backbone=with_backbone)
    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tail = tail_prefixes(meta)
    missing = [k for k in missing if not k.startswith("backbone.") or meta["backbone_in_file"]
               or k.startswith(tail)]
    unexpected = [k for k in unexpected if with_backbone or not k.startswith("backbone.")]
    if missing or unexpected:
        raise DataError(f"'{folder}': weights do not match the model description (missing "
                        f"{missing[:5]}, unexpected {unexpected[:5]}). Was the file edited?")
    if tail and with_backbone:    # no longer the named weights: say so (feature cache keys)
        h = hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state)
                                    if k.startswith(tail))).hexdigest()
        model.backbone.weights_id += f"+tail-sha256-{h[:16]}"
    return model.to(device).eval()


def resolve_model_folder(folder: Path) -> Path:
    """A model folder, a split folder (``split_NN/model``) or a run with one split."""
    if (folder / "model.json").exists() or not folder.is_dir():
        return folder
    if (folder / "model" / "model.json").exists():
        return folder / "model"
    splits = sorted(p for p in folder.glob("split_*") if (p / "model" / "model.json").exists())
    if len(splits) == 1:
        return splits[0] / "model"
    if splits:
        raise DataError(f"'{folder}' holds {len(splits)} trained splits; pass one of them, "
                        f"e.g. {splits[0]}.")
    return folder


def default_model_path() -> Path:
    """The model shipped inside the package (trained on CLIVE + BIQ2021, see README)."""
    path = Path(__file__).resolve().parent.parent / "assets" / "default_model"
    if not (path / "model.json").exists():
        raise DataError("This installation ships no default model; pass --model RUN_FOLDER.")
    return path
