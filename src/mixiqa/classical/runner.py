"""NIQE and BRISQUE as mixiqa methods: scoring files, and runs over train/val/test splits.

Both metrics are lower-is-better. Everywhere mixiqa wants a quality (the ``q`` column of
``predictions.csv``, the SRCC of a split) it uses ``q = -score``, so that a good metric
has a positive SRCC like every learned model. ``brisque-refit`` predicts quality directly
(higher is better) from an SVR fitted on the split's training images, so its q is its
prediction.

Per-image values (the NIQE score; BRISQUE's 36 features, from which both BRISQUE variants
score) are computed once: kept in memory for the process, and on disk when a cache folder
is given, one ``.npy`` per image content hash.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from mixiqa.errors import ConfigError, DataError
from mixiqa.progress import progress

METHODS = ("niqe", "brisque", "brisque-refit")   # names run_classical accepts
SCORERS = ("niqe", "brisque")                   # names that score an image on their own
CACHE_VERSION = 1
_MEMORY: dict[tuple, np.ndarray] = {}           # (kind, path, size, mtime) -> values


def check_method(name: str, allowed: Sequence[str] = METHODS) -> str:
    """The canonical method name, or ConfigError with a "did you mean"."""
    import difflib

    key = name.lower().replace("_", "-")
    if key not in allowed:
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"Unknown classical method '{name}'.{hint} Choose one of "
                          f"{', '.join(allowed)}.")
    return key


def classical_score(image, method: str) -> float:
    """NIQE or BRISQUE (standard LIVE model) of one image; lower is better.

    Args:
        image: PIL image or array: uint8 in [0, 255] or float in [0, 1], grey or RGB.
        method: ``niqe`` or ``brisque``.
    """
    from mixiqa.classical.brisque import brisque
    from mixiqa.classical.niqe import niqe

    return niqe(image) if check_method(method, SCORERS) == "niqe" else brisque(image)


def image_values(path: str, kind: str) -> np.ndarray:
    """What is cached per image: (1,) NIQE score for ``niqe``, (36,) features for ``brisque``.

    Raises:
        DataError: The file cannot be decoded or is too small.
    """
    from mixiqa.classical.brisque import brisque_features
    from mixiqa.classical.niqe import niqe
    from mixiqa.data.transforms import open_rgb

    im = open_rgb(path)
    return np.array([niqe(im)]) if kind == "niqe" else brisque_features(im)


def _worker(job: tuple[str, str]) -> tuple[np.ndarray | None, str | None]:
    try:
        return image_values(*job), None
    except DataError as e:  # reported by the caller, never aborts the run
        return None, str(e)


class _DiskCache:
    """One ``.npy`` per (kind, image content); written atomically."""

    def __init__(self, root: str | Path, kind: str):
        self.folder = Path(root) / f"classical-v{CACHE_VERSION}" / kind

    def _file(self, content_hash: str) -> Path:
        return self.folder / content_hash[:2] / f"{content_hash}.npy"

    def get(self, content_hash: str) -> np.ndarray | None:
        try:
            return np.load(self._file(content_hash), allow_pickle=False)
        except (OSError, ValueError):
            return None

    def put(self, content_hash: str, values: np.ndarray) -> None:
        f = self._file(content_hash)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, values)
        os.replace(tmp, f)


def _memory_key(path: str, kind: str) -> tuple:
    st = os.stat(path)
    return kind, os.path.abspath(path), st.st_size, st.st_mtime_ns


def _cached(path: str, kind: str, disk: _DiskCache | None) -> np.ndarray | None:
    """Values from memory, else from disk (raises OSError for a missing file)."""
    from mixiqa.features import file_hash

    key = _memory_key(path, kind)
    if key not in _MEMORY and disk is not None:
        hit = disk.get(file_hash(path))
        if hit is not None:
            _MEMORY[key] = hit
    return _MEMORY.get(key)


def _store(path: str, kind: str, disk: _DiskCache | None, values: np.ndarray) -> None:
    from mixiqa.features import file_hash

    _MEMORY[_memory_key(path, kind)] = values
    if disk is not None:
        disk.put(file_hash(path), values)


def compute_values(paths: Sequence[str], kind: str, workers: int = 0,
                   cache_dir: str | Path | None = None) -> list[np.ndarray | None]:
    """Per-image values (see :func:`image_values`) for many files; None where a file
    cannot be read, with one warning naming those files.

    Args:
        workers: Processes computing in parallel; 0 computes in this process.
        cache_dir: Folder of the on-disk cache; None keeps values in memory only.
    """
    disk = _DiskCache(cache_dir, kind) if cache_dir else None
    out: list[np.ndarray | None] = [None] * len(paths)
    todo, errors = [], []
    for i, p in enumerate(paths):
        try:
            out[i] = _cached(p, kind, disk)
        except OSError as e:
            errors.append(f"Cannot read image '{p}' ({e.strerror or e})")
            continue
        if out[i] is None:
            todo.append(i)
    for i, (values, err) in zip(todo, _run_jobs([(paths[i], kind) for i in todo], workers)):
        if values is None:
            errors.append(err)
        else:
            out[i] = values
            _store(paths[i], kind, disk, values)
    if errors:
        shown = "; ".join(errors[:3]) + ("; ..." if len(errors) > 3 else "")
        warnings.warn(f"{kind}: {len(errors)} image(s) could not be scored and get NaN: "
                      f"{shown}", stacklevel=2)
    return out


def _run_jobs(jobs: list[tuple[str, str]], workers: int):
    desc = f"{jobs[0][1]} features" if jobs else ""
    if workers and workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            yield from progress(ex.map(_worker, jobs, chunksize=4), total=len(jobs), desc=desc)
    else:
        yield from progress(map(_worker, jobs), total=len(jobs), desc=desc)


def values_matrix(values: list[np.ndarray | None], dim: int) -> np.ndarray:
    """(N, dim) array from per-image values, NaN rows where an image failed."""
    return np.stack([np.full(dim, np.nan) if v is None else v for v in values]) if values \
        else np.zeros((0, dim))


def score_paths(paths: Sequence[str], method: str, workers: int = 0,
                cache_dir: str | Path | None = None) -> np.ndarray:
    """NIQE or BRISQUE (standard model) of image files; NaN (and a warning) where a file
    cannot be decoded or is too small. Lower is better.

    Args:
        paths: Image files.
        method: ``niqe`` or ``brisque``.
        workers: Processes computing in parallel; 0 computes in this process.
        cache_dir: Optional on-disk cache of per-image values, keyed by file content.
    """
    method = check_method(method, SCORERS)
    values = compute_values(list(paths), method, workers, cache_dir)
    if method == "niqe":
        return values_matrix(values, 1)[:, 0]
    return standard_brisque(values_matrix(values, 36))


def standard_brisque(features: np.ndarray) -> np.ndarray:
    """(N,) BRISQUE scores of (N, 36) features with the LIVE model; NaN rows stay NaN."""
    from mixiqa.classical.brisque import live_model

    out = np.full(len(features), np.nan)
    ok = np.isfinite(features).all(axis=1)
    if ok.any():
        out[ok] = live_model().predict(features[ok])
    return out


def _cache_root(cfg) -> Path:
    from mixiqa.features import default_cache_dir

    return Path(cfg.train.cache_dir) if cfg.train.cache_dir else default_cache_dir()


def row_values(rows, kind: str, cfg) -> np.ndarray:
    """(N, 1) NIQE scores or (N, 36) BRISQUE features of manifest rows, computed in
    ``cfg.train.workers`` processes and cached under the run's cache folder; NaN rows (and
    a warning naming the files) where an image cannot be read."""
    dim = 1 if kind == "niqe" else 36
    return values_matrix(compute_values([r.path for r in rows], kind, cfg.train.workers,
                                        _cache_root(cfg)), dim)


def _regressor(cfg):
    """The refit's regressor from ``method.mapper_kwargs`` (less ``max_train``)."""
    from mixiqa.classical.brisque import BrisqueRegressor

    kwargs = {k: v for k, v in cfg.method.mapper_kwargs.items() if k != "max_train"}
    try:
        return BrisqueRegressor(**kwargs)
    except TypeError as e:
        raise ConfigError(f"method.mapper_kwargs for brisque-refit: {e}. Use C, gamma, "
                          "epsilon, C_grid, gamma_grid or max_train.") from e


def _capped(rows, cap: int | None, seed: int) -> list:
    """At most ``cap`` rows, drawn without replacement with the split's seed."""
    rows = list(rows)
    if cap is None or len(rows) <= int(cap):
        return rows
    pick = np.random.default_rng(seed).choice(len(rows), int(cap), replace=False)
    return [rows[k] for k in sorted(pick)]


def _usable(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    ok = np.isfinite(x).all(axis=1)
    return (x[ok], y[ok]) if ok.any() else (None, None)


def _own_scale(q01: np.ndarray, test, seen: set) -> np.ndarray:
    """[0, 1] quality -> each test image's dataset scale (NaN for datasets not trained on)."""
    return np.array([np.nan if r.dataset not in seen else
                     r.score_min + (qi if r.higher_better else 1 - qi) * (r.score_max - r.score_min)
                     for r, qi in zip(test, q01)])


def _refit(cfg, split, train, val, test) -> tuple[np.ndarray, np.ndarray, str, float | None]:
    """BRISQUE refit on the split's training images: (q, pred on own scale, selected,
    val SRCC). Targets are each image's score rescaled to [0, 1] over its dataset's
    range, higher is better, so that datasets on different scales can share one SVR."""
    reg = _regressor(cfg)
    rows = _capped(train, cfg.method.mapper_kwargs.get("max_train"), split.seed or 0)
    x, y = _usable(row_values(rows, "brisque", cfg), np.array([r.quality01() for r in rows]))
    if x is None:
        raise DataError("BRISQUE refit: none of the training images could be read.")
    xv, yv = _usable(row_values(val, "brisque", cfg), np.array([r.quality01() for r in val]))
    reg.fit(x, y, xv, yv)
    q = np.full(len(test), np.nan)                            # (N_test,) [0, 1] quality
    xt = row_values(test, "brisque", cfg)
    ok = np.isfinite(xt).all(axis=1)
    if ok.any():
        q[ok] = reg.predict(xt[ok])
    pred = _own_scale(q, test, {r.dataset for r in rows})
    return q, pred, f"svr C={reg.C_:g} gamma={reg.gamma_:g}", reg.val_srcc_


def split_metrics(q: np.ndarray, test) -> dict:
    """Per test dataset: evaluate(q, oriented scores) plus ``n`` (images scored) and
    ``n_failed`` where some images could not be scored."""
    from mixiqa.evaluate import evaluate
    from mixiqa.train import oriented

    y, names = oriented(test), np.array([r.dataset for r in test])
    out = {}
    for n in dict.fromkeys(names):
        m = names == n
        ok = m & np.isfinite(q)
        if not ok.any():
            raise DataError(f"Dataset '{n}': none of its {int(m.sum())} test images could "
                            "be scored; check the image files (see the warning above).")
        out[n] = {**evaluate(q[ok], y[ok], fit="logistic4").as_dict(), "n": int(ok.sum())}
        if ok.sum() < m.sum():
            out[n]["n_failed"] = int(m.sum() - ok.sum())
    return out


def run_one_split(cfg, method: str, split, manifest, sdir: Path, log=print) -> dict:
    """Score (and for the refit, train on) one split; writes ``predictions.csv``."""
    from mixiqa.experiment import write_predictions

    train, val, test = split.apply(manifest)
    log(f"{method}, split seed {split.seed}: train {len(train)}, val {len(val)}, "
        f"test {len(test)}")
    pred, val_srcc = None, None
    if method == "brisque-refit":
        q, pred, selected, val_srcc = _refit(cfg, split, train, val, test)
    elif method == "niqe":
        q, selected = -row_values(test, "niqe", cfg)[:, 0], "standard (pristine MVG)"
    else:
        q, selected = -standard_brisque(row_values(test, "brisque", cfg)), "standard (LIVE SVR)"
    write_predictions(sdir / "predictions.csv", test, q, pred)
    return {"seed": split.seed, "protocol": split.protocol, "method": method,
            "test": split_metrics(q, test), "val_srcc": val_srcc, "selected": selected,
            "history": []}


def run_classical(cfg, prep, splits: list, out: Path, resume: bool, device: str,
                  log=print) -> list[dict]:
    """Test NIQE, BRISQUE or BRISQUE refit on every split, like ``run_splits`` does.

    Writes ``split_NN/{split.json, result.json, predictions.csv}`` per split; a split
    with a ``result.json`` is skipped on ``resume``. ``cfg.method.mapper_kwargs`` go to
    :class:`~mixiqa.classical.brisque.BrisqueRegressor` for ``brisque-refit``, except
    ``max_train`` (int): at most that many training images, drawn with the split's seed.
    The metrics need no device (``device`` is ignored); ``cfg.train.workers`` processes
    compute features, cached under ``cfg.train.cache_dir`` (default: the feature cache).
    """
    method = check_method(cfg.method.name)
    from mixiqa.experiment import each_split

    return each_split(splits, out, resume, lambda split, sdir: run_one_split(
        cfg, method, split, prep.manifest, sdir, log))


run_classical.needs_features = False


def add_classical_command(sub) -> None:
    """``mixiqa classical {niqe,brisque} PATHS... [--workers N] [--out CSV]``."""
    p = sub.add_parser("classical", help="score images with NIQE or BRISQUE (lower is better)")
    p.add_argument("method", choices=SCORERS)
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--workers", type=int, default=0, help="parallel processes (0: none)")
    p.add_argument("--cache-dir", default=None, help="on-disk cache of per-image values")
    p.add_argument("--out", default=None, help="write path,score rows to this CSV file")
    p.set_defaults(func=cmd_classical)


def cmd_classical(args) -> int:
    """Print (or write) one ``path,score`` row per image; 1 if any image failed."""
    import csv
    import sys

    from mixiqa.score import expand_inputs

    paths = expand_inputs(args.inputs)
    scores = score_paths(paths, args.method, args.workers, args.cache_dir)
    f = open(args.out, "w", newline="") if args.out else sys.stdout
    try:
        w = csv.writer(f)
        w.writerow(["path", args.method])
        w.writerows([p, "" if np.isnan(v) else f"{v:.6g}"] for p, v in zip(paths, scores))
    finally:
        if args.out:
            f.close()
    return int(np.isnan(scores).any())
