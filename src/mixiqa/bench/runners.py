"""Bench runners: what trains and tests one bench cell on its splits.

A runner is ``fn(cfg, prep, splits, out, resume, device) -> list[dict]``: one per-split
result dict (``{"seed", "protocol", "method", "test": {dataset: metrics}, ...}``, as
:func:`mixiqa.experiment.run_splits` returns) per split, in order, with the split's files
written under ``out/split_NN/``. Other modules add runners by name::

    from mixiqa.bench.runners import RUNNERS, no_features

    @RUNNERS.register("niqe")
    @no_features                 # the bench then loads the rows only (prep.feats is None)
    def niqe_runner(cfg, prep, splits, out, resume, device):
        ...

and are imported by the bench when their module is listed in :data:`RUNNER_MODULES`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Callable

from mixiqa.config import ExperimentConfig
from mixiqa.errors import ConfigError
from mixiqa.registry import Registry

Runner = Callable[..., list]

RUNNERS: Registry[Runner] = Registry("bench runner")

# Modules that register runners (classical baselines, Re-IQA ...); imported on first use so
# that ``runner: niqe`` resolves without the user importing anything.
RUNNER_MODULES: list[str] = []


def no_features(fn: Runner) -> Runner:
    """Mark a runner as needing no backbone features: the bench skips the backbone and the
    feature cache and hands it a ``Prepared`` with the rows only."""
    fn.needs_features = False
    return fn


def needs_features(fn: Runner) -> bool:
    """Whether a runner wants :func:`mixiqa.experiment.prepare` (backbone and features)."""
    return bool(getattr(fn, "needs_features", True))


def load_runner_modules() -> None:
    """Import every module of :data:`RUNNER_MODULES` so their runners are registered."""
    for name in RUNNER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as e:
            raise ConfigError(f"bench runner module '{name}' cannot be imported ({e}); "
                              "remove it from mixiqa.bench.runners.RUNNER_MODULES or "
                              "install what it needs.") from e


def get_runner(name: str) -> Runner:
    load_runner_modules()
    return RUNNERS.get(name)


@RUNNERS.register("experiment")
def experiment_runner(cfg: ExperimentConfig, prep, splits: list, out: Path, resume: bool,
                      device: str) -> list[dict]:
    """The training of ``mixiqa train``: one model per split (finished splits kept on resume)."""
    from mixiqa.experiment import run_splits

    return run_splits(cfg, prep, splits, out, resume, device, log=lambda *a: None)


@RUNNERS.register("classical")
@no_features
def classical_runner(cfg: ExperimentConfig, prep, splits: list, out: Path, resume: bool,
                     device: str) -> list[dict]:
    """NIQE, BRISQUE (LIVE model) or BRISQUE refit per split: ``method.name`` picks one."""
    from mixiqa.classical.runner import run_classical

    return run_classical(cfg, prep, splits, out, resume, device, log=lambda *a: None)


@RUNNERS.register("reiqa")
@no_features
def reiqa_runner(cfg: ExperimentConfig, prep, splits: list, out: Path, resume: bool,
                 device: str) -> list[dict]:
    """Re-IQA ridge regressor on content and/or quality-encoder features (reiqa-*)."""
    from mixiqa.reiqa import run_reiqa

    return run_reiqa(cfg, prep, splits, out, resume, device, log=lambda *a: None)


def _check_classical(name: str) -> str:
    from mixiqa.classical.runner import check_method

    return check_method(name)


def _check_reiqa(name: str) -> str:
    from mixiqa.reiqa import VARIANTS

    if name not in VARIANTS:
        raise ConfigError(f"Unknown Re-IQA variant '{name}'; choose {', '.join(VARIANTS)}.")
    return name


classical_runner.check_method = _check_classical
reiqa_runner.check_method = _check_reiqa
