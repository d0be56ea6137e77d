"""What a synthetic alignment benchmark is: the datasets, their scales and their raters.

Each synthetic dataset sees a part of one latent quality axis (a quantile window of a
full-reference measure) and reports it on its own scale, through its own monotone
nonlinear annotation transform, range and direction, with rater noise: the situation
of real IQA datasets, but with the common quality axis known. A method that aligns the
datasets well ranks ALL test images together by that latent quality.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from mixiqa.errors import ConfigError
from mixiqa.registry import Registry

Transform = Callable[[np.ndarray, float], np.ndarray]
TRANSFORMS: Registry[Transform] = Registry("annotation transform")


# ---- annotation transforms: increasing maps of [0, 1] onto [0, 1] ----------------------

@TRANSFORMS.register("linear")
def linear(u: np.ndarray, param: float) -> np.ndarray:
    return u


@TRANSFORMS.register("logistic")
def logistic(u: np.ndarray, param: float) -> np.ndarray:
    """A logistic of steepness ``param`` centred at 0.5, renormalised to hit 0 and 1."""
    s = lambda x: 1.0 / (1.0 + np.exp(-param * (x - 0.5)))   # noqa: E731
    return (s(u) - s(0.0)) / (s(1.0) - s(0.0))


@TRANSFORMS.register("power")
def power(u: np.ndarray, param: float) -> np.ndarray:
    """u ** param: param > 1 compresses the low end, < 1 the high end."""
    return u ** param


@TRANSFORMS.register("exp")
def exp(u: np.ndarray, param: float) -> np.ndarray:
    return np.expm1(param * u) / math.expm1(param)


@TRANSFORMS.register("log")
def log(u: np.ndarray, param: float) -> np.ndarray:
    return np.log1p(param * u) / math.log1p(param)


# ---- the spec ---------------------------------------------------------------------------

@dataclass
class SynthDataset:
    """One synthetic dataset and its (misaligned) rating protocol.

    Attributes:
        name: Dataset name (letters, digits, ``_``): its folder and its name in runs.
        distortions: Distortion types it contains (see :mod:`mixiqa.distortions`).
        window: Quantile window (lo, hi) of the latent quality, over all rendered images,
            that it keeps: its part of the quality range.
        transform: Annotation transform name (``logistic``, ``power``, ``exp``, ``log``).
        transform_param: The transform's shape parameter.
        score_range: (min, max) of its rating scale.
        higher_better: False for a DMOS-like scale.
        rater_sd: One rater's noise sd, as a fraction of the scale.
        n_raters: Ratings averaged per image (MOS = mean, std = their sd).
    """

    name: str
    distortions: tuple[str, ...]
    window: tuple[float, float]
    transform: str = "linear"
    transform_param: float = 1.0
    score_range: tuple[float, float] = (0.0, 1.0)
    higher_better: bool = True
    rater_sd: float = 0.12
    n_raters: int = 20

    def annotate(self, u: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Within-window quality u in [0, 1] -> (MOS, std) on this dataset's scale.

        Each of ``n_raters`` raters reports transform(u) plus Gaussian noise, clipped to
        the scale as a rating form would; the MOS is their mean.
        """
        t = TRANSFORMS.get(self.transform)(np.clip(u, 0.0, 1.0), self.transform_param)
        ratings = np.clip(t[:, None] + rng.normal(0.0, self.rater_sd, (len(u), self.n_raters)),
                          0.0, 1.0)                                   # (N, raters)
        mean, sd = ratings.mean(axis=1), ratings.std(axis=1, ddof=1)
        lo, hi = self.score_range
        mos = lo + (hi - lo) * (mean if self.higher_better else 1.0 - mean)
        return mos, sd * (hi - lo)

    def check(self, known_distortions: list[str]) -> None:
        where = f"synthetic dataset '{self.name}'"
        if not self.name.replace("_", "").isalnum():
            raise ConfigError(f"{where}: use letters, digits and '_' in the name.")
        bad = [d for d in self.distortions if d not in known_distortions]
        if bad or not self.distortions:
            raise ConfigError(f"{where}: distortions {bad or '[]'} are not valid; choose from "
                              f"{', '.join(known_distortions)}.")
        a, b = self.window
        if not 0.0 <= a < b <= 1.0:
            raise ConfigError(f"{where}: window {self.window} must be quantiles 0 <= lo < hi <= 1.")
        TRANSFORMS.get(self.transform)
        if not self.score_range[0] < self.score_range[1]:
            raise ConfigError(f"{where}: score_range {self.score_range} needs min < max.")
        if self.rater_sd < 0 or self.n_raters < 2:
            raise ConfigError(f"{where}: need rater_sd >= 0 and n_raters >= 2.")


@dataclass
class SynthSpec:
    """The whole benchmark: datasets, image size, latent measure and seed."""

    datasets: list[SynthDataset] = field(default_factory=list)
    seed: int = 0
    size: int = 256
    latent: str = "haarpsi"
    include_pristine: bool = True

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))   # tuples -> lists, JSON/YAML-ready

    @classmethod
    def from_dict(cls, data: dict) -> "SynthSpec":
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"synthetic spec: unknown key(s) {sorted(unknown)}; known: "
                              f"{sorted(known)}.")
        sets = [_dataset_from_dict(d) for d in data.pop("datasets", [])]
        return cls(datasets=sets, **data)

    def check(self) -> None:
        from mixiqa.distortions import distortion_names
        from mixiqa.synth.sources import LATENTS

        LATENTS.get(self.latent)
        if not self.datasets:
            raise ConfigError("synthetic spec: 'datasets' is empty.")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigError(f"synthetic spec: dataset names {names} must be unique.")
        if self.size < 32:
            raise ConfigError(f"synthetic spec: size {self.size} is too small; use >= 32.")
        for d in self.datasets:
            d.check(distortion_names())

    def dataset(self, name: str) -> SynthDataset:
        for d in self.datasets:
            if d.name == name:
                return d
        raise ConfigError(f"No synthetic dataset '{name}'; the spec has "
                          f"{', '.join(d.name for d in self.datasets)}.")


def _dataset_from_dict(d: dict) -> SynthDataset:
    known = {f.name for f in fields(SynthDataset)}
    if not isinstance(d, dict) or set(d) - known:
        raise ConfigError(f"synthetic dataset {d!r}: expected a mapping with keys from "
                          f"{sorted(known)}.")
    d = dict(d)
    for k in ("distortions", "window", "score_range"):
        if k in d:
            d[k] = tuple(d[k])
    return SynthDataset(**d)


# Cycled over the datasets: different transforms, scales and directions (two DMOS).
DEFAULT_PROTOCOLS = (
    dict(transform="logistic", transform_param=10.0, score_range=(0.0, 100.0),
         higher_better=True, rater_sd=0.10),
    dict(transform="power", transform_param=2.5, score_range=(1.0, 5.0),
         higher_better=True, rater_sd=0.15),
    dict(transform="log", transform_param=30.0, score_range=(0.0, 1.0),
         higher_better=False, rater_sd=0.12),
    dict(transform="exp", transform_param=3.0, score_range=(0.0, 10.0),
         higher_better=False, rater_sd=0.18),
)


def default_windows(k: int, width: float = 0.6) -> list[tuple[float, float]]:
    """k quantile windows of ``width`` spread evenly from the bottom to the top.

    For k = 4: (0, .6), (.13, .73), (.27, .87), (.4, 1): neighbours overlap by about two
    thirds, the two ends by a third of a window.
    """
    if k == 1:
        return [(0.0, 1.0)]
    step = (1.0 - width) / (k - 1)
    return [(round(i * step, 4), round(i * step + width, 4)) for i in range(k)]


def default_spec(n_datasets: int = 4, seed: int = 0, distortions: list[str] | None = None,
                 size: int = 256, share: float = 0.6) -> SynthSpec:
    """K datasets, each with a ``share`` of the distortion types.

    The types are shuffled by seed and each dataset takes a run of consecutive ones
    (cyclically) from its own offset, so subsets overlap partly and, with K * share >= 1,
    every type appears in some dataset.
    """
    from mixiqa.distortions import distortion_names

    if n_datasets < 1:
        raise ConfigError(f"n_datasets={n_datasets}: need at least one synthetic dataset.")
    pool = sorted(distortions or distortion_names())
    order = np.random.default_rng([seed, zlib.crc32(b"distortion subsets")]).permutation(pool)
    n_types = min(len(pool), max(2, round(share * len(pool))))
    sets = []
    for i, window in enumerate(default_windows(n_datasets)):
        start = round(i * len(pool) / n_datasets)
        types = tuple(sorted(str(order[(start + j) % len(pool)]) for j in range(n_types)))
        sets.append(SynthDataset(name=f"syn_{chr(ord('a') + i)}", distortions=types,
                                 window=window, **DEFAULT_PROTOCOLS[i % len(DEFAULT_PROTOCOLS)]))
    spec = SynthSpec(datasets=sets, seed=seed, size=size)
    spec.check()
    return spec


def swap_transforms(spec: SynthSpec, a: str, b: str) -> SynthSpec:
    """A copy of ``spec`` in which datasets ``a`` and ``b`` trade annotation transforms.

    Everything else (content, distortions, windows, scales, noise) stays: a ranking of
    methods that is about alignment, not about one transform, must survive the swap.
    """
    da, db = spec.dataset(a), spec.dataset(b)
    swapped = {a: replace(da, transform=db.transform, transform_param=db.transform_param),
               b: replace(db, transform=da.transform, transform_param=da.transform_param)}
    return replace(spec, datasets=[swapped.get(d.name, d) for d in spec.datasets])


def load_spec(path: str | Path) -> SynthSpec:
    """A spec from YAML (configs/synth.yaml) or from a build's synth.json."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Synthetic spec '{path}' not found. See configs/synth.yaml.")
    data = yaml.safe_load(path.read_text())
    if isinstance(data, dict) and "spec" in data:   # a build's synth.json
        data = data["spec"]
    spec = SynthSpec.from_dict(data or {})
    spec.check()
    return spec
