"""The training loop, top to bottom: data -> targets -> model -> epochs -> best on val -> test.

One function per stage; :func:`train_split` reads as the recipe. A frozen backbone trains
on cached features (seconds on a CPU); otherwise images flow through the backbone.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mixiqa import __version__
from mixiqa.config import ExperimentConfig
from mixiqa.data.manifest import Manifest
from mixiqa.data.sampling import DomainBatchSampler, MixedBatchSampler
from mixiqa.errors import ConfigError
from mixiqa.methods import Method, get_method
from mixiqa.models.iqa import IQAModel, ScoreScale, build_model, save_model
from mixiqa.progress import progress


# ---- targets --------------------------------------------------------------------------

def fit_scales(train: Manifest, kind: str) -> dict[str, ScoreScale]:
    """Per-dataset target scaling from the TRAINING split only (MonotonicIQA: min-max)."""
    scales = {}
    for name in train.datasets:
        rows = train.where(dataset=name)
        s = np.array(rows.scores())
        r0 = rows[0]
        lo, hi = (float(s.min()), float(s.max())) if kind == "rescaled" else (r0.score_min, r0.score_max)
        if hi <= lo:
            raise ConfigError(f"All training scores of '{name}' are equal ({lo}); cannot learn.")
        scales[name] = ScoreScale(name, kind, lo, hi, r0.higher_better, r0.score_min, r0.score_max)
    return scales


def targets_of(rows: Manifest, scales: dict[str, ScoreScale]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets and target-scale stds (NaN where the release gives no std)."""
    y = torch.tensor([float(scales[r.dataset].to_target(torch.tensor(r.score))) for r in rows])
    sd = torch.tensor([np.nan if r.std is None else r.std * scales[r.dataset].target_scale()
                       for r in rows], dtype=torch.float32)
    return y.float(), sd


def oriented(rows: Manifest) -> np.ndarray:
    """Raw scores with DMOS negated: SRCC against these is positive for a good model."""
    return np.array([r.score if r.higher_better else -r.score for r in rows])


# ---- the loss ---------------------------------------------------------------------------

def batch_loss(model: IQAModel, method: Method, weights: dict, q: torch.Tensor,
               y: torch.Tensor, sd: torch.Tensor, dom: torch.Tensor,
               align: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the datasets in the batch of the method's losses on g_k(q) vs targets.

    Args:
        q, y, sd: Proxy scores, targets and target stds, each (B,).
        dom: Dataset index of each sample (selects its mapper), (B,).
        align: Alignment domain of each sample for SIND (dataset or scene), (B,).
    """
    from mixiqa import losses as L

    names = model.datasets
    total, parts = q.new_zeros(()), 0
    for k, name in enumerate(names):
        m = dom == k
        if int(m.sum()) < 2:
            continue
        qk, yk, mapper = q[m], y[m], model.mappers[name]
        pred = mapper(qk)                                   # (B_k,) on the target scale
        lk = q.new_zeros(())
        if "smooth_l1" in weights:
            lk = lk + weights["smooth_l1"] * L.smooth_l1(pred, yk)
        if "norm_in_norm" in weights:
            lk = lk + weights["norm_in_norm"] * L.norm_in_norm(pred, yk)
        if "plcc" in weights:
            lk = lk + weights["plcc"] * L.plcc_loss(pred, yk)
        if "fidelity" in weights:
            lk = lk + weights["fidelity"] * L.fidelity_loss(qk, yk, sd[m])
        if "consistency" in weights:
            lk = lk + weights["consistency"] * mapper.extra_loss(qk, yk)
        total, parts = total + lk, parts + 1
    total = total / max(parts, 1)
    if "sind" in weights:
        total = total + weights["sind"] * L.sind_loss(q, y, dom if align is None else align)
    if "range_prior" in weights:
        ranges = {n: (0.0, 10.0) if model.scales[n].kind == "rescaled"
                  else (model.scales[n].score_min, model.scales[n].score_max) for n in names}
        # the reference's coupling shortcut (y1 = y2) inverts in one pass; the exact
        # bisection inverse costs ~50 mapper evaluations per step
        total = total + weights["range_prior"] * L.mimi_range_prior(
            [model.mappers[n] for n in names], [ranges[n] for n in names], inverse="coupling")
    return total


# ---- inputs: cached features or images ------------------------------------------------

class FeatureInputs:
    """Cached feature vectors of every row in memory; a batch is an index lookup."""

    frozen = True

    def __init__(self, feats: dict[str, torch.Tensor]):
        self.feats = feats                                  # part -> (N_part, D)

    def train_batches(self, sampler):
        for b in sampler:
            b = np.asarray(b)
            yield self.feats["train"][b], b

    def eval_batches(self, part: str, batch_size: int = 512):
        x = self.feats[part]
        for s in range(0, len(x), batch_size):
            yield x[s:s + batch_size]


class ImageInputs:
    """Images decoded and cropped in DataLoader workers (fine-tuning path)."""

    frozen = False

    def __init__(self, rows: dict[str, Manifest], train_tf, eval_tf, workers: int, seed: int):
        from mixiqa.data.imageset import IQADataset

        self.train = IQADataset(rows["train"], train_tf, seed=seed)
        self.evalsets = {p: IQADataset(rows[p], eval_tf) for p in rows}
        self.workers = workers

    def train_batches(self, sampler):
        from torch.utils.data import DataLoader

        self.train.set_epoch(sampler.epoch)
        loader = DataLoader(self.train, batch_sampler=sampler, num_workers=self.workers)
        for batch in loader:
            yield batch["image"], batch["index"].numpy()

    def eval_batches(self, part: str, batch_size: int = 1):
        from torch.utils.data import DataLoader

        # full images at test resolution differ in size: one image per batch
        for batch in DataLoader(self.evalsets[part], batch_size=1, num_workers=self.workers):
            yield batch["image"]


def predict(model: IQAModel, inputs, part: str, device) -> np.ndarray:
    """Proxy q for every row of a split part, in eval mode, without gradients."""
    model.eval()
    out = []
    with torch.inference_mode():
        for x in inputs.eval_batches(part):
            x = x.to(device)
            q = model.forward_features(x) if inputs.frozen else model(x)
            out.append(q.float().cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


def per_dataset_srcc(q: np.ndarray, rows: Manifest) -> dict[str, float]:
    from scipy.stats import spearmanr

    y = oriented(rows)
    names = np.array([r.dataset for r in rows])
    return {n: float(spearmanr(q[names == n], y[names == n])[0]) for n in dict.fromkeys(names)}


def val_score(model, inputs, rows: Manifest, device) -> float:
    """Mean over datasets of the validation SRCC of q: the only checkpoint criterion."""
    vals = [v for v in per_dataset_srcc(predict(model, inputs, "val", device), rows).values()
            if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


# ---- checkpoints ------------------------------------------------------------------------

def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: write a temporary file, then rename over the old checkpoint."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# ---- one split, top to bottom -------------------------------------------------------------

def make_optimizer(model: IQAModel, cfg: ExperimentConfig, steps_per_epoch: int):
    t = cfg.train
    backbone = [p for p in (model.backbone.parameters() if model.backbone is not None else [])
                if p.requires_grad]
    rest = [p for n, p in model.named_parameters() if not n.startswith("backbone.") and p.requires_grad]
    groups = [{"params": rest, "lr": t.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": t.lr * t.backbone_lr_mult})
    opt = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay)
    if t.scheduler == "cosine":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: cosine_factor(e, t))
    elif t.scheduler == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, t.step_size, t.gamma)
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)
    return opt, sched


def cosine_factor(epoch: int, t) -> float:
    if epoch < t.warmup_epochs:
        return (epoch + 1) / t.warmup_epochs
    p = (epoch - t.warmup_epochs) / max(1, t.epochs - t.warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * p))


def make_sampler(method: Method, dom: np.ndarray, align: np.ndarray, cfg: ExperimentConfig):
    """SIND: k=2 alignment domains x n images per batch; otherwise per-dataset quotas."""
    t = cfg.train
    if method.sampler == "domain" and len(np.unique(align)) >= 2:
        return DomainBatchSampler(align, k=2, n=max(2, t.batch_size // 2), seed=t.seed)
    return MixedBatchSampler(dom, t.batch_size, quotas=t.quotas, seed=t.seed)


def alignment_domains(rows: Manifest, by: str) -> np.ndarray:
    """Domain index of each training row for SIND alignment and domain sampling."""
    if by == "dataset":
        keys = [r.dataset for r in rows]
    elif by == "scene":
        missing = [r.name for r in rows if r.scene is None]
        if missing:
            raise ConfigError(f"method.domain=scene but {len(missing)} training images have no "
                              f"scene label (e.g. '{missing[0]}'); use domain=dataset.")
        keys = [f"{r.dataset}/{r.scene}" for r in rows]
    else:
        raise ConfigError(f"method.domain must be 'dataset' or 'scene', not '{by}'.")
    names = list(dict.fromkeys(keys))
    return np.array([names.index(k) for k in keys])


def amp_setup(cfg: ExperimentConfig, device: str):
    """Mixed precision only on a GPU: bf16 where supported (no scaler), else fp16 + scaler."""
    if device != "cuda" or not cfg.train.amp:
        return None, torch.amp.GradScaler("cuda", enabled=False)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return dtype, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def train_epoch(model, forward, method, weights, inputs, sampler, targets, opt, scaler,
                amp_dtype, device) -> float:
    """One pass over the sampler's batches; returns the mean loss."""
    y, sd, dom, align = targets
    model.train()
    losses = []
    for x, b in inputs.train_batches(sampler):
        x = x.to(device, non_blocking=True)
        with torch.autocast(device_type=device, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            q = forward(x)                                               # (B,)
        loss = batch_loss(model, method, weights, q.float(), y[b].to(device), sd[b].to(device),
                          torch.as_tensor(dom[b], device=device),
                          torch.as_tensor(align[b], device=device))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(float(loss.detach()))                              # sync point
    return float(np.mean(losses))


def train_split(cfg: ExperimentConfig, model: IQAModel, inputs, rows: dict[str, Manifest],
                out: Path, resume: bool = False, device: str = "cpu", log=print) -> dict:
    """Train one split; returns the history. Best-on-validation weights end up in ``model``."""
    method = get_method(cfg.method.name)
    weights = {**method.losses, **cfg.method.loss_weights}
    y, sd = targets_of(rows["train"], model.scales)
    dom = np.array([model.datasets.index(r.dataset) for r in rows["train"]])
    align = alignment_domains(rows["train"], cfg.method.domain)
    sampler = make_sampler(method, dom, align, cfg)
    opt, sched = make_optimizer(model, cfg, len(sampler))
    amp_dtype, scaler = amp_setup(cfg, device)
    forward = model.forward_features if inputs.frozen else model
    if cfg.train.compile and device == "cuda":
        forward = torch.compile(forward)  # wraps the call only: state_dict keys unchanged
    ckpt_path = out / "checkpoint.pt"
    start, best, best_state, history = 0, -math.inf, None, []
    if resume and ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        model.load_state_dict(ck["model"]), opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"]), torch.set_rng_state(ck["rng"])
        start, best, best_state, history = ck["epoch"], ck["best"], ck["best_state"], ck["history"]
        log(f"resumed from {ckpt_path} at epoch {start}")
    has_val = len(rows["val"]) > 0
    bar = progress(range(start, cfg.train.epochs), total=cfg.train.epochs, initial=start,
                   desc=f"training {cfg.method.name}")
    for epoch in bar:
        sampler.set_epoch(epoch)
        loss = train_epoch(model, forward, method, weights, inputs, sampler, (y, sd, dom, align),
                           opt, scaler, amp_dtype, device)
        sched.step()
        entry = {"epoch": epoch + 1, "loss": loss}
        if has_val and ((epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs):
            entry["val_srcc"] = val_score(model, inputs, rows["val"], device)
            if entry["val_srcc"] > best:
                best = entry["val_srcc"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append(entry)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss:.4f}", val_srcc=f"{entry.get('val_srcc', math.nan):.3f}")
        save_checkpoint(ckpt_path, {"model": model.state_dict(), "optimizer": opt.state_dict(),
                                    "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                                    "epoch": epoch + 1, "best": best, "best_state": best_state,
                                    "history": history})
    if best_state is not None:  # validation picks the weights; the test split never does
        model.load_state_dict(best_state)
    return {"history": history, "best_val_srcc": best if has_val else None,
            "selected": "best validation SRCC" if has_val else "last epoch (no validation split)"}


# ---- experiments: data, splits, one training per split, aggregate ------------------------

def resolve_device(name: str) -> str:
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
            train_sets = [d.name for d in cfg.datasets if d.name not in s.test_datasets]
            out += make_splits(manifest, "cross", train_datasets=train_sets,
                               test_datasets=list(s.test_datasets), val_ratio=s.ratios[1],
                               seed=seed)
        else:
            out += make_splits(manifest, s.protocol, val_ratio=s.ratios[1], seed=seed)
    return out


def model_meta(cfg: ExperimentConfig, method: Method, train_names: list[str],
               in_features: int, weights_id: str, frozen: bool) -> dict:
    from mixiqa.features import FeatureSpec

    m = cfg.model
    mapper_kw = dict(cfg.method.mapper_kwargs)
    return {
        "mixiqa_version": __version__,
        "method": method.name,
        "backbone": {"name": m.backbone, "weights": m.weights, "weights_id": weights_id,
                     "frozen": frozen},
        "features": asdict(feature_spec(cfg)) if frozen else None,
        "head": {"name": m.head, "in_features": in_features, "kwargs": dict(m.head_kwargs)},
        "mappers": {n: {"name": method.mapper, "config": mapper_kw} for n in train_names},
        "eval": {"short": cfg.train.test_short},
    }


def feature_spec(cfg: ExperimentConfig):
    from mixiqa.features import FeatureSpec

    m = cfg.model
    return FeatureSpec(m.backbone, m.weights, m.feature_short, m.feature_crop,
                       tuple(m.scales), m.pooling)


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


def evaluate_split(model: IQAModel, inputs, rows: dict[str, Manifest], device,
                   fit: str = "logistic4") -> dict:
    """Test metrics per dataset, on q (what the model outputs at inference)."""
    from mixiqa.evaluate import evaluate

    q = predict(model, inputs, "test", device)
    y = oriented(rows["test"])
    names = np.array([r.dataset for r in rows["test"]])
    out = {}
    for n in dict.fromkeys(names):
        m = names == n
        out[n] = {**evaluate(q[m], y[m], fit=fit).as_dict(), "n": int(m.sum())}
    return out


def run_split(cfg: ExperimentConfig, split, manifest: Manifest, feats, backbone, out: Path,
              resume: bool, device: str, log=print) -> dict:
    """Everything for one split: targets, model, training, post-fit, test, model files."""
    method = get_method(cfg.method.name)
    rows = dict(zip(("train", "val", "test"), split.apply(manifest)))
    torch.manual_seed(cfg.train.seed * 1000 + (split.seed or 0))
    scales = fit_scales(rows["train"], method.targets)
    frozen = feats is not None
    if frozen:
        pos = {k: i for i, k in enumerate(manifest.keys())}
        part_feats = {p: feats[[pos[k] for k in r.keys()]] for p, r in rows.items()}
        inputs = FeatureInputs(part_feats)
        dim = feats.shape[1]
    else:
        from mixiqa.data.transforms import eval_transform, train_transform

        t = cfg.train
        inputs = ImageInputs(rows, train_transform(backbone.mean, backbone.std, t.train_short,
                                                   t.train_crop),
                             eval_transform(backbone.mean, backbone.std, t.test_short),
                             t.workers, t.seed)
        dim = backbone.num_features
    meta = model_meta(cfg, method, list(scales), dim, backbone.weights_id, frozen)
    if not frozen and cfg.model.head == "sind" and backbone.embed_dim:
        meta["head"]["kwargs"].setdefault("embed_dim", backbone.embed_dim)
    model = build_model(meta, scales, with_backbone=False)
    if frozen:
        model.feature_norm.fit(part_feats["train"])
    else:
        model.backbone = backbone
    model.to(device)
    log(f"split seed {split.seed}: train {len(rows['train'])}, val {len(rows['val'])}, "
        f"test {len(rows['test'])}")
    info = train_split(cfg, model, inputs, rows, out, resume=resume, device=device, log=log)
    post_fit(model, method, inputs, rows["train"], device)
    result = {"seed": split.seed, "protocol": split.protocol, "method": method.name,
              "test": evaluate_split(model, inputs, rows, device),
              "val_srcc": info["best_val_srcc"], "selected": info["selected"],
              "history": info["history"]}
    model.backbone = None if frozen else model.backbone
    save_model(model, out / "model", include_backbone=not frozen)
    return result


def run_experiment(cfg: ExperimentConfig, out: str | Path, resume: bool = False,
                   log=print) -> dict:
    """Train and test on every split of the config's protocol; write results and models.

    A finished split (its ``result.json`` exists) is skipped on ``resume``; an interrupted
    one continues from its last epoch checkpoint.
    """
    from mixiqa.evaluate import median_over_splits
    from mixiqa.features import ExtractStats, extract_features
    from mixiqa.models.backbones import create_backbone

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(cfg.train.device)
    cfg.save(out / "config.yaml")
    manifest = load_data(cfg)
    splits = build_splits(cfg, manifest)
    backbone = create_backbone(cfg.model.backbone, weights=cfg.model.weights)
    feats, timings, t0 = None, {}, time.perf_counter()
    if cfg.model.freeze:
        stats = ExtractStats()
        feats = torch.from_numpy(extract_features(
            [r.path for r in manifest], backbone.to(device), feature_spec(cfg),
            cache_root=cfg.train.cache_dir, workers=cfg.train.workers, stats=stats))
        timings["features"] = asdict(stats)
        log(f"features: {stats.computed} computed, {stats.cached} from the cache "
            f"({stats.seconds_total:.0f} s)")
    results = []
    for i, split in enumerate(splits):
        sdir = out / f"split_{i:02d}"
        sdir.mkdir(exist_ok=True)
        done = sdir / "result.json"
        if resume and done.exists():
            results.append(json.loads(done.read_text()))
            continue
        split.save(sdir / "split.json")
        res = run_split(cfg, split, manifest, feats, backbone, sdir, resume, device, log)
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=1))
        os.replace(tmp, done)
        results.append(res)
    timings["total_seconds"] = time.perf_counter() - t0
    summary = summarize(results)
    summary.update({"timings": timings, "config": cfg.to_dict(), "mixiqa_version": __version__,
                    "seeds": [r["seed"] for r in results], "device": device})
    (out / "results.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def summarize(results: list[dict]) -> dict:
    """Median over splits per dataset, and the test-image-weighted mean over datasets."""
    from mixiqa.evaluate import median_over_splits, weighted_mean

    names = list(dict.fromkeys(n for r in results for n in r["test"]))
    per = {n: median_over_splits([r["test"][n] for r in results if n in r["test"]]) for n in names}
    counts = {n: int(np.median([r["test"][n]["n"] for r in results if n in r["test"]])) for n in names}
    return {"per_dataset": per, "weighted": weighted_mean(per, counts) if len(names) > 1 else None,
            "n_splits": len(results), "splits": results}
