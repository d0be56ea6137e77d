"""Experiments: datasets -> splits -> one training per split -> medians over splits.

:func:`run_experiment` is what ``mixiqa train`` runs; :func:`prepare` and :func:`run_splits`
let a benchmark share loaded data and cached features across many methods and splits.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mixiqa import __version__, distributed
from mixiqa.config import ExperimentConfig
from mixiqa.data.manifest import Manifest
from mixiqa.errors import ConfigError
from mixiqa.progress import progress
from mixiqa.methods import Method, get_method
from mixiqa.models.iqa import IQAModel, build_model, save_model
from mixiqa.train import (CHECKPOINT_FILE, FeatureInputs, ImageInputs, fit_scales, oriented,
                          predict, targets_of, torch_threads, train_split)


def resolve_device(name: str) -> str:
    """``auto`` -> cuda where a GPU is visible; under torchrun, this rank's device (and the
    process group is joined, see :mod:`mixiqa.distributed`)."""
    if distributed.requested():
        return distributed.init(name)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for but no GPU is visible; use device=cpu.")
    return name


def load_data(cfg: ExperimentConfig) -> Manifest:
    from mixiqa.data.datasets import load_manifest

    manifest = Manifest()
    for d in cfg.datasets:
        manifest += load_manifest(d.name, d.root, allow_missing=d.allow_missing,
                                  show_progress=False, **d.options)
    return manifest


def build_splits(cfg: ExperimentConfig, manifest: Manifest) -> list:
    """The protocol's splits, one or more per seed (leave-one-out gives several)."""
    from mixiqa.data.splits import Split, make_splits

    s = cfg.split
    if s.file:
        return [Split.load(s.file)]
    out = []
    for seed in s.seeds:
        if s.protocol in ("random", "content"):
            out += make_splits(manifest, s.protocol, ratios=tuple(s.ratios), seed=seed)
        elif s.protocol == "official":
            out += make_splits(manifest, "official", val_ratio=s.ratios[1], seed=seed,
                               unlabelled_ratios=tuple(s.ratios))
        elif s.protocol == "cross":
            # the names the records carry (a generic csv dataset's is its `name` option)
            train_sets = [n for n in manifest.datasets if n not in s.test_datasets]
            out += make_splits(manifest, "cross", train_datasets=train_sets,
                               test_datasets=list(s.test_datasets), val_ratio=s.ratios[1],
                               seed=seed)
        else:
            out += make_splits(manifest, s.protocol, val_ratio=s.ratios[1], seed=seed)
    return out


def model_meta(cfg: ExperimentConfig, method: Method, train_names: list[str],
               in_features: int, weights_id: str, frozen: bool) -> dict:
    m = cfg.model
    mapper_kw = dict(cfg.method.mapper_kwargs)
    return {
        "mixiqa_version": __version__,
        "method": method.name,
        "backbone": {"name": m.backbone, "weights": m.weights, "weights_id": weights_id,
                     "frozen": frozen},
        # a trained tail is saved into the backbone: scoring pools the whole backbone's stages
        "features": asdict(replace(feature_spec(cfg), tail=0)) if frozen else None,
        "head": {"name": m.head, "in_features": in_features, "kwargs": dict(m.head_kwargs)},
        "mappers": {n: {"name": method.mapper, "config": mapper_kw} for n in train_names},
        "eval": {"short": cfg.train.test_short},
    }


def feature_spec(cfg: ExperimentConfig):
    from mixiqa.features import FeatureSpec

    m = cfg.model
    return FeatureSpec(m.backbone, m.weights, m.feature_short, m.feature_crop,
                       tuple(m.scales), m.pooling, m.feature_max_short, m.train_tail)


def post_fit(model: IQAModel, method: Method, inputs, rows: Manifest, device) -> None:
    """Fit each dataset's mapper on (q, target) of the training split where the loss
    learned none (SIND statistics, a logistic for the rank loss, an affine for naive)."""
    from mixiqa.models.mappers import create_mapper

    if not method.post_fit:
        return
    q = torch.as_tensor(predict(model, inputs, "train", device))
    y, _ = targets_of(rows, model.scales)
    names = np.array([r.dataset for r in rows])
    for n in model.datasets:
        m = torch.as_tensor(names == n)
        mapper = create_mapper(method.post_fit).fit(q[m], y[m])
        model.mappers[n] = mapper.to(device)
        conf = {k: v for k, v in mapper.config().items() if k != "name"}
        model.meta["mappers"][n] = {"name": method.post_fit, "config": conf}


def evaluate_split(model: IQAModel, q: np.ndarray, test: Manifest,
                   fit: str = "logistic4") -> dict:
    """Test metrics per dataset, on q (what the model outputs at inference)."""
    from mixiqa.evaluate import evaluate

    y = oriented(test)
    names = np.array([r.dataset for r in test])
    out = {}
    for n in dict.fromkeys(names):
        m = names == n
        out[n] = {**evaluate(q[m], y[m], fit=fit).as_dict(), "n": int(m.sum())}
    return out


def dataset_scale_predictions(model: IQAModel, q: np.ndarray, test: Manifest) -> np.ndarray:
    """q -> each image's own dataset scale through its mapper; NaN where the model has no
    mapper for that dataset (e.g. the test set of a cross-dataset split)."""
    pred = np.full(len(q), np.nan)
    names = np.array([r.dataset for r in test])
    with torch.no_grad():
        for n in model.datasets:
            m = names == n
            if m.any():
                qt = torch.as_tensor(q[m], dtype=torch.float32,
                                     device=module_device(model.mappers[n]))
                pred[m] = model.to_dataset_scale(qt, n).cpu().numpy()
    return pred


def module_device(module: torch.nn.Module) -> torch.device:
    """Where a module's tensors are: its parameters', else its buffers' (SIND's mapper has
    only buffers), else the CPU."""
    t = next(itertools.chain(module.parameters(), module.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


def write_predictions(path: Path, test: Manifest, q: np.ndarray,
                      pred: np.ndarray | None = None) -> None:
    """One CSV row per test image: raw score, proxy q and the dataset-scale prediction
    (empty where there is none). Reports and the synthetic benchmark read this file."""
    import csv

    pred = np.full(len(q), np.nan) if pred is None else pred
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "dataset", "score", "higher_better", "q", "pred", "path"])
        for r, qi, pi in zip(test, q, pred):
            w.writerow([r.name, r.dataset, r.score, int(r.higher_better), f"{qi:.6g}",
                        "" if np.isnan(pi) else f"{pi:.6g}", r.path])
    os.replace(tmp, path)


def run_split(cfg: ExperimentConfig, split, manifest: Manifest, feats, backbone, out: Path,
              resume: bool, device: str, log=print) -> dict:
    """Everything for one split: targets, model, training, post-fit, test, model files."""
    method = get_method(cfg.method.name)
    rows = dict(zip(("train", "val", "test"), split.apply(manifest)))
    torch.manual_seed(cfg.train.seed * 1000 + (split.seed or 0))
    scales = fit_scales(rows["train"], method.targets)
    frozen, tail = feats is not None, None
    if frozen:
        pos = {k: i for i, k in enumerate(manifest.keys())}
        part_feats = {p: feats[[pos[k] for k in r.keys()]] for p, r in rows.items()}
        if cfg.model.train_tail:   # the cached rows feed the backbone's last blocks
            from mixiqa.models.tail import Tail

            tail = Tail(backbone, feature_spec(cfg), flip=cfg.model.tail_flip,
                        crop=cfg.model.tail_crop)
        dim = tail.out_features if tail else feats.shape[1]
    else:
        from mixiqa.data.transforms import eval_transform, train_transform

        t = cfg.train
        tfs = (train_transform(backbone.mean, backbone.std, t.train_short, t.train_crop),
               eval_transform(backbone.mean, backbone.std, t.test_short))
        if t.preload:   # decoded once, kept on the device, cropped there
            from mixiqa.data.preload import PreloadedImages

            inputs = PreloadedImages(rows, *tfs, device, t.seed)
        else:
            inputs = ImageInputs(rows, *tfs, t.workers, t.seed)
        dim = backbone.num_features
    meta = model_meta(cfg, method, list(scales), dim, backbone.weights_id, frozen)
    if not frozen and cfg.model.head == "sind" and backbone.embed_dim:
        meta["head"]["kwargs"].setdefault("embed_dim", backbone.embed_dim)
    if tail:
        meta["backbone"]["tail_blocks"] = list(range(tail.start, len(tail.model.blocks)))
    model = build_model(meta, scales, with_backbone=False)
    if frozen:
        model, inputs = frozen_inputs(model, part_feats, tail)
    else:
        # every split fine-tunes its own copy: the next split must start from the same weights
        model.backbone = copy.deepcopy(backbone)
    model.to(device)
    log(f"split seed {split.seed}: train {len(rows['train'])}, val {len(rows['val'])}, "
        f"test {len(rows['test'])}")
    started = time.monotonic()
    with torch_threads(cfg.train.threads):
        info = train_split(cfg, model, inputs, rows, out, resume=resume, device=device, log=log)
    post_fit(model, method, inputs, rows["train"], device)
    q_test = predict(model, inputs, "test", device)
    result = {"seed": split.seed, "protocol": split.protocol, "method": method.name,
              "test": evaluate_split(model, q_test, rows["test"]),
              "val_srcc": info["best_val_srcc"], "selected": info["selected"],
              "train_seconds": round(time.monotonic() - started, 1),   # this session's part
              "history": info["history"]}
    if not distributed.is_main():   # every rank trained the same model; rank 0 writes it
        return result
    write_predictions(out / "predictions.csv", rows["test"], q_test,
                      dataset_scale_predictions(model, q_test, rows["test"]))
    model.backbone = None if frozen and not tail else model.backbone
    save_model(model, out / "model", include_backbone=not frozen)   # a tail's blocks go in
    return result


def frozen_inputs(model: IQAModel, part_feats: dict, tail) -> tuple[IQAModel, object]:
    """The frozen path's model and inputs: the head on cached features standardised once;
    with a tail (``model.train_tail``) the backbone's last blocks train too, on cached rows,
    and the standardiser is fitted on the blocks' pretrained output."""
    if tail is None:
        model.feature_norm.fit(part_feats["train"])
        return model, FeatureInputs(part_feats, model.feature_norm)
    from mixiqa.models.tail import RowInputs, TailModel

    model.feature_norm.fit(tail.features(part_feats["train"]))
    model = TailModel(model.head, dict(model.mappers), model.scales, model.meta,
                      backbone=tail, feature_norm=model.feature_norm)
    return model, RowInputs(part_feats)


@dataclass
class Prepared:
    """What every split and method of an experiment shares: rows, backbone, features."""

    manifest: Manifest
    backbone: nn.Module
    feats: torch.Tensor | None      # (N, D) cached features, in manifest order (frozen path)
    timings: dict


def prepare(cfg: ExperimentConfig, device: str, log=print) -> Prepared:
    """Load the datasets, build the backbone and (frozen path) fetch every image's features."""
    from mixiqa.features import ExtractStats, extract_features
    from mixiqa.models.backbones import create_backbone

    manifest = load_data(cfg)
    backbone = create_backbone(cfg.model.backbone, weights=cfg.model.weights)
    feats, timings = None, {}
    if cfg.model.freeze:
        paths = [r.path for r in manifest]
        if distributed.active():  # each rank extracts its stride into the shared cache first
            extract_features(distributed.shard(paths), backbone.to(device), feature_spec(cfg),
                             cache_root=cfg.train.cache_dir, workers=cfg.train.workers)
            distributed.barrier()
        stats = ExtractStats()
        feats = torch.from_numpy(extract_features(
            paths, backbone.to(device), feature_spec(cfg),
            cache_root=cfg.train.cache_dir, workers=cfg.train.workers, stats=stats))
        timings["features"] = asdict(stats)
        log(f"features: {stats.computed} computed, {stats.cached} from the cache "
            f"({stats.seconds_total:.0f} s)")
    return Prepared(manifest, backbone, feats, timings)


def each_split(splits: list, out: Path, resume: bool, run_one, jobs: int = 1) -> list[dict]:
    """The split loop every runner shares: ``run_one(split, folder) -> result`` per split,
    with ``split_NN/split.json`` and an atomic ``result.json``; a split whose result exists
    is kept on ``resume``. Under torchrun rank 0 writes and all ranks wait for it.

    ``jobs > 1`` trains that many splits at once in forked worker processes (one torch
    thread each); they inherit the cached features copy-on-write, so nothing is pickled but
    the split index and its result. Results come back in split order either way.
    """
    results: list = [None] * len(splits)
    todo = []
    for i in range(len(splits)):
        done = Path(out) / f"split_{i:02d}" / "result.json"
        if resume and done.exists():
            results[i] = json.loads(done.read_text())
        else:
            todo.append(i)
    jobs = min(jobs, len(todo))
    if jobs > 1 and not distributed.active():
        _each_split_parallel(splits, out, run_one, todo, jobs, results)
    else:
        for i in todo:
            results[i] = _one_split(splits, out, run_one, i)
    return results


def _one_split(splits: list, out: Path, run_one, i: int) -> dict:
    sdir = Path(out) / f"split_{i:02d}"
    sdir.mkdir(parents=True, exist_ok=True)
    if distributed.is_main():
        splits[i].save(sdir / "split.json")
    res = run_one(splits[i], sdir)
    if distributed.is_main():
        done = sdir / "result.json"
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, done)
        # the result is final and resume skips the split: its training checkpoint (optimizer
        # state, every weight; ~8 MB a split) only served an interrupted run
        (sdir / CHECKPOINT_FILE).unlink(missing_ok=True)
    distributed.barrier()   # no rank starts the next split before the result is on disk
    return res


_FORKED_TASK: tuple | None = None   # (splits, out, run_one), set just before the fork


def _forked_split(i: int) -> dict:
    torch.set_num_threads(1)        # the jobs share the cores; one thread each
    os.environ["MIXIQA_QUIET"] = "1"    # parallel bars would overwrite each other's line
    splits, out, run_one = _FORKED_TASK
    return _one_split(splits, out, run_one, i)


def _each_split_parallel(splits, out, run_one, todo, jobs, results) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _FORKED_TASK
    _FORKED_TASK = (splits, out, run_one)
    try:
        # fork, not spawn: the closure and the features are inherited, never pickled; a
        # worker that dies (out of memory) raises BrokenProcessPool here instead of hanging
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as ex:
            done = progress(ex.map(_forked_split, todo), total=len(todo),
                            desc=f"splits ({jobs} at once)")
            for i, res in zip(todo, done):
                results[i] = res
    finally:
        _FORKED_TASK = None


def split_jobs(cfg: ExperimentConfig, device: str, frozen: bool) -> int:
    """How many splits train at once: ``train.jobs`` ("auto": one per usable core), but one
    where a split needs the whole machine (fine-tuning, a GPU) or under torchrun."""
    jobs = cfg.train.jobs                    # checked when the config was read
    if jobs == "auto":
        jobs = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if not frozen or device != "cpu" or distributed.active():
        return 1
    return jobs


def run_splits(cfg: ExperimentConfig, prep: Prepared, splits: list, out: Path,
               resume: bool, device: str, log=print) -> list[dict]:
    """One training per split; a split with a ``result.json`` is skipped on resume."""
    return each_split(splits, out, resume, lambda split, sdir: run_split(
        cfg, split, prep.manifest, prep.feats, prep.backbone, sdir, resume, device, log),
        jobs=split_jobs(cfg, device, prep.feats is not None))


def run_experiment(cfg: ExperimentConfig, out: str | Path, resume: bool = False,
                   log=print) -> dict:
    """Train and test on every split of the config's protocol; write results and models.

    A finished split (its ``result.json`` exists) is skipped on ``resume``; an interrupted
    one continues from its last epoch checkpoint.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.train.device)
    if distributed.is_main():
        cfg.save(out / "config.yaml")
    t0 = time.perf_counter()
    prep = prepare(cfg, device, log)
    results = run_splits(cfg, prep, build_splits(cfg, prep.manifest), out, resume, device, log)
    timings = {**prep.timings, "total_seconds": time.perf_counter() - t0}
    summary = summarize(results)
    summary.update({"timings": timings, "config": cfg.to_dict(), "mixiqa_version": __version__,
                    "seeds": [r["seed"] for r in results], "device": device})
    summary["world_size"] = distributed.world_size()
    if distributed.is_main():
        (out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def summarize(results: list[dict]) -> dict:
    """Median over splits per dataset, and the test-image-weighted mean over datasets."""
    from mixiqa.evaluate import median_over_splits, weighted_mean

    names = list(dict.fromkeys(n for r in results for n in r["test"]))
    per = {n: median_over_splits([r["test"][n] for r in results if n in r["test"]]) for n in names}
    counts = {n: int(np.median([r["test"][n]["n"] for r in results if n in r["test"]]))
              for n in names}
    for n in names:
        per[n]["n"] = counts[n]  # test images per split (median), shown in the table
    return {"per_dataset": per, "weighted": weighted_mean(per, counts) if len(names) > 1 else None,
            "n_splits": len(results), "splits": results}
