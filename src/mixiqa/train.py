"""The training loop, top to bottom: data -> targets -> model -> epochs -> best on val -> test.

One function per stage; :func:`train_split` reads as the recipe. A frozen backbone trains
on cached features (seconds on a CPU); otherwise images flow through the backbone.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mixiqa.config import ExperimentConfig
from mixiqa.data.manifest import Manifest
from mixiqa.data.sampling import DomainBatchSampler, MixedBatchSampler
from mixiqa.errors import ConfigError
from mixiqa.methods import Method, get_method
from mixiqa.models.iqa import IQAModel, ScoreScale
from mixiqa.optim import amp_setup, make_ema, make_optimizer
from mixiqa.progress import progress


# ---- targets --------------------------------------------------------------------------

def fit_scales(train: Manifest, kind: str) -> dict[str, ScoreScale]:
    """Per-dataset target scaling from the TRAINING split only (MonotonicIQA: min-max)."""
    scales = {}
    for name in train.datasets:
        rows = train.where(dataset=name)
        s = np.array(rows.scores())
        r0 = rows[0]
        if kind == "rescaled":
            lo, hi = float(s.min()), float(s.max())
        elif kind == "zscore":
            lo, hi = float(s.mean()), float(s.mean() + s.std())
        else:
            lo, hi = r0.score_min, r0.score_max
        if hi <= lo:
            raise ConfigError(f"All training scores of '{name}' are equal ({lo}); cannot learn.")
        scales[name] = ScoreScale(name, kind, lo, hi, r0.higher_better, r0.score_min, r0.score_max)
    return scales


def targets_of(rows: Manifest, scales: dict[str, ScoreScale]) -> tuple[torch.Tensor, torch.Tensor]:
    """Training targets and target-scale stds (NaN where the release gives no std)."""
    names = np.array([r.dataset for r in rows])
    scores = torch.tensor([r.score for r in rows], dtype=torch.float64)
    y = torch.empty(len(rows), dtype=torch.float64)
    for name in dict.fromkeys(names):                     # vectorised per dataset
        m = torch.as_tensor(names == name)
        y[m] = scales[name].to_target(scores[m])
    sd = torch.tensor([np.nan if r.std is None else r.std * scales[r.dataset].target_scale()
                       for r in rows], dtype=torch.float32)
    return y.float(), sd


def oriented(rows: Manifest) -> np.ndarray:
    """Raw scores with DMOS negated: SRCC against these is positive for a good model."""
    return np.array([r.score if r.higher_better else -r.score for r in rows])


# ---- the loss ---------------------------------------------------------------------------

def batch_loss(model: IQAModel, method: Method, weights: dict, q: torch.Tensor,
               y: torch.Tensor, sd: torch.Tensor, dom: torch.Tensor,
               align: torch.Tensor | None = None, options: dict | None = None) -> torch.Tensor:
    """Mean over the datasets in the batch of the method's losses on g_k(q) vs targets.

    Args:
        q, y, sd: Proxy scores, targets and target stds, each (B,).
        dom: Dataset index of each sample (selects its mapper), (B,).
        align: Alignment domain of each sample for SIND (dataset or scene), (B,).
        options: Loss name -> keyword options of its function (``method.loss_options``).
    """
    from mixiqa import losses as L

    names = model.datasets
    opt = {loss: {} for loss in L.OPTION_LOSSES} | (options or {})   # loss -> its kwargs
    total, parts = q.new_zeros(()), 0
    for k, name in enumerate(names):
        m = dom == k
        if int(m.sum()) < 2:
            continue
        qk, yk, mapper = q[m], y[m], model.mappers[name]
        pred = mapper(qk)                                   # (B_k,) on the target scale
        # a weight given as {dataset: w} applies to the datasets it names (0 for the rest)
        wk = {loss: w.get(name, 0.0) if isinstance(w, dict) else w for loss, w in weights.items()}
        lk = q.new_zeros(())
        if "smooth_l1" in wk:
            lk = lk + wk["smooth_l1"] * L.smooth_l1(pred, yk, **opt["smooth_l1"])
        if "norm_in_norm" in wk:
            lk = lk + wk["norm_in_norm"] * L.norm_in_norm(pred, yk, **opt["norm_in_norm"])
        if "plcc" in wk:
            lk = lk + wk["plcc"] * L.plcc_loss(pred, yk, **opt["plcc"])
        if "fidelity" in wk:
            lk = lk + wk["fidelity"] * L.fidelity_loss(qk, yk, sd[m], **opt["fidelity"])
        if "consistency" in wk:
            lk = lk + wk["consistency"] * mapper.extra_loss(qk, yk)
        total, parts = total + lk, parts + 1
    total = total / max(parts, 1)
    if "sind" in weights:
        w, domains = weights["sind"], dom if align is None else align
        if isinstance(w, dict):  # per dataset: each image carries its dataset's weight
            per_image = q.new_tensor([w.get(name, 0.0) for name in names])[dom]   # (B,)
            total = total + L.sind_loss(q, y, domains, weights=per_image, **opt["sind"])
        else:
            total = total + w * L.sind_loss(q, y, domains, **opt["sind"])
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
    """Cached feature vectors of every row in memory, standardised once by the model's
    FeatureNorm (fitted on the training part); a batch is an index lookup."""

    frozen = True

    def __init__(self, feats: dict[str, torch.Tensor], norm=None):
        with torch.no_grad():                               # part -> (N_part, D)
            self.feats = {p: (x if norm is None else norm(x)).contiguous()
                          for p, x in feats.items()}

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
            q = model.forward_normalized(x) if inputs.frozen else model(x)
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


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run a block with ``n`` torch CPU threads (None: leave the setting alone). Heads on
    cached features are small matrices, where a second thread mostly adds spin-waiting."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# ---- checkpoints ------------------------------------------------------------------------

CHECKPOINT_FILE = "checkpoint.pt"   # in each split folder while it trains (see each_split)


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic: write a temporary file, then rename over the old checkpoint."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


# ---- one split, top to bottom -------------------------------------------------------------

def make_sampler(method: Method, dom: np.ndarray, align: np.ndarray, cfg: ExperimentConfig):
    """SIND: k=2 alignment domains x n images per batch; otherwise per-dataset quotas.

    SIND aligning whole datasets with quotas other than ``equal`` (a per-dataset count list,
    or ``proportional``) takes them: every batch still holds every dataset, each aligned on
    its own share of the batch.
    """
    t = cfg.train
    if method.sampler == "domain" and len(np.unique(align)) >= 2:
        if t.quotas == "equal" or cfg.method.domain != "dataset":   # the config refuses
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


class TrainStep(nn.Module):
    """q = f(x) and the method's loss in one forward pass.

    Training calls this module (wrapped in DistributedDataParallel under torchrun), so every
    parameter the loss touches, mappers included, is one DDP reduces.
    """

    def __init__(self, model: IQAModel, method: Method, weights: dict, frozen: bool,
                 amp_dtype=None, compile_fn: bool = False, options: dict | None = None):
        super().__init__()
        self.model, self.method, self.weights, self.amp_dtype = model, method, weights, amp_dtype
        self.options = options
        self.f = model.forward_normalized if frozen else model.forward
        if compile_fn:
            self.f = torch.compile(self.f)  # wraps the call only: state_dict keys unchanged

    def forward(self, x, y, sd, dom, align) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            q = self.f(x)                                                    # (B,)
        return batch_loss(self.model, self.method, self.weights, q.float(), y, sd, dom, align,
                          self.options)


def train_epoch(step: nn.Module, inputs, sampler, targets, opt, scaler, device,
                ema=None) -> float:
    """One pass over the sampler's batches; returns the mean loss (over ranks under DDP).
    ``ema`` (from :func:`make_ema`) is updated after every optimizer step."""
    from mixiqa import distributed

    y, sd, dom, align = targets
    model = getattr(step, "module", step).model     # under DDP, step wraps the TrainStep
    step.train()
    losses = []
    for x, b in inputs.train_batches(sampler):
        loss = step(x.to(device, non_blocking=True), y[b].to(device), sd[b].to(device),
                    torch.as_tensor(dom[b], device=device),
                    torch.as_tensor(align[b], device=device))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            ema.update(model)
        losses.append(loss.detach())      # kept on the device: no sync with the GPU per step
    mean = (torch.stack(losses).double().mean().cpu() if losses
            else torch.tensor(float("nan"), dtype=torch.float64))
    if distributed.active():
        torch.distributed.all_reduce(mean)
        mean /= distributed.world_size()
    return float(mean)


def resume_from(path: Path, model: IQAModel, opt, sched, ema=None) -> tuple:
    """Restore model, optimizer, schedule, RNG and weight average from a checkpoint; returns
    (epoch, best val SRCC, best-validation state, history) to go on from."""
    ck = load_checkpoint(path)
    model.load_state_dict(ck["model"]), opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"]), torch.set_rng_state(ck["rng"])
    if ema is not None:
        if ck.get("ema") is None:
            raise ConfigError(f"{path} was saved without train.ema, so its weight average is "
                              "lost; resume with the run's own train.ema, or start afresh "
                              "without --resume.")
        ema.module.load_state_dict(ck["ema"])
    return ck["epoch"], ck["best"], ck["best_state"], ck["history"]


def train_split(cfg: ExperimentConfig, model: IQAModel, inputs, rows: dict[str, Manifest],
                out: Path, resume: bool = False, device: str = "cpu", log=print) -> dict:
    """Train one split; returns the history. Best-on-validation weights end up in ``model``."""
    from mixiqa import distributed

    method = get_method(cfg.method.name)
    weights = {**method.losses, **cfg.method.loss_weights}   # checked by the config
    y, sd = targets_of(rows["train"], model.scales)
    dom = np.array([model.datasets.index(r.dataset) for r in rows["train"]])
    align = alignment_domains(rows["train"], cfg.method.domain)
    sampler = make_sampler(method, dom, align, cfg)
    opt, sched = make_optimizer(model, cfg, len(sampler))
    amp_dtype, scaler = amp_setup(cfg, device)
    step = TrainStep(model, method, weights, inputs.frozen, amp_dtype,
                     cfg.train.compile and device.startswith("cuda"), cfg.method.loss_options)
    if distributed.active():  # each rank: its share of every global batch; DDP averages grads
        sampler = distributed.ShardedBatches(sampler, dom, distributed.rank(),
                                             distributed.world_size())
        step = nn.parallel.DistributedDataParallel(
            step, device_ids=[torch.device(device).index] if device.startswith("cuda") else None,
            find_unused_parameters=True)  # a mapper whose dataset a batch lacks gets no grad
    ema = make_ema(model, cfg.train.ema)
    judged = model if ema is None else ema.module   # what validation scores and keeps
    ckpt_path = out / CHECKPOINT_FILE
    start, best, best_state, history = 0, -math.inf, None, []
    if resume and ckpt_path.exists():
        start, best, best_state, history = resume_from(ckpt_path, model, opt, sched, ema)
        log(f"resumed from {ckpt_path} at epoch {start}")
    has_val = len(rows["val"]) > 0
    last_save = time.monotonic()
    bar = progress(range(start, cfg.train.epochs), total=cfg.train.epochs, initial=start,
                   desc=f"training {cfg.method.name}")
    for epoch in bar:
        sampler.set_epoch(epoch)
        loss = train_epoch(step, inputs, sampler, (y, sd, dom, align), opt, scaler, device,
                           ema)
        sched.step()
        entry = {"epoch": epoch + 1, "loss": loss}
        if has_val and ((epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs):
            entry["val_srcc"] = val_score(judged, inputs, rows["val"], device)
            if entry["val_srcc"] > best:
                best = entry["val_srcc"]
                best_state = {k: v.detach().clone() for k, v in judged.state_dict().items()}
        history.append(entry)
        if hasattr(bar, "set_postfix"):   # no validation part: no val_srcc=nan on the bar
            shown = {"loss": f"{loss:.4f}"}
            if has_val and best > -math.inf:
                shown["best_val_srcc"] = f"{best:.3f}"
            bar.set_postfix(shown)
        due = time.monotonic() - last_save >= cfg.train.checkpoint_seconds
        if distributed.is_main() and (due or epoch + 1 == cfg.train.epochs):
            save_checkpoint(ckpt_path, {
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "rng": torch.get_rng_state(),
                "epoch": epoch + 1, "best": best, "best_state": best_state, "history": history,
                "ema": None if ema is None else ema.module.state_dict()})
            last_save = time.monotonic()
    if best_state is not None:  # validation picks the weights; the test split never does
        model.load_state_dict(best_state)
    elif ema is not None:       # no validation part: the average at the last epoch
        model.load_state_dict(ema.module.state_dict())
    selected = "best validation SRCC" if has_val else "last epoch (no validation split)"
    if ema is not None:
        selected += f", weights averaged over steps (train.ema {cfg.train.ema})"
    return {"history": history, "best_val_srcc": best if has_val else None,
            "selected": selected}
