"""``mixiqa pretrain``: Re-IQA quality-aware contrastive pretraining of an image encoder.

MoCo-v2 (:mod:`mixiqa.pretrain.moco`) on quality-aware views (:mod:`mixiqa.pretrain.data`),
starting from ImageNet weights. Scores are never read: any folder of images will do.

A run folder holds ``config.yaml``, ``checkpoint.pt`` (written atomically every
``checkpoint_every`` steps: weights, optimiser, queue, step; ``--resume`` continues from
it and reproduces the uninterrupted run), ``pretrain.json`` (config, steps, loss curve,
seconds) and, when finished, ``encoder.safetensors``: the query encoder's timm weights,
which ``create_backbone(name, weights="RUN/encoder.safetensors")`` loads.

Reference: Saha et al., "Re-IQA: Unsupervised Learning for Image Quality Assessment in
the Wild", CVPR 2023.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import safetensors.torch
import torch
from torch.utils.data import DataLoader

from mixiqa import __version__
from mixiqa.errors import ConfigError
from mixiqa.progress import progress
from mixiqa.pretrain.config import PretrainConfig, check_resumable, load_pretrain_config
from mixiqa.pretrain.data import QualityViews, find_images
from mixiqa.pretrain.moco import MoCo, ProjectedEncoder, freeze_batchnorm

ENCODER_FILE, CHECKPOINT_FILE, INFO_FILE = "encoder.safetensors", "checkpoint.pt", "pretrain.json"


def build_moco(cfg: PretrainConfig) -> MoCo:
    """ImageNet backbone + projection head (seeded) as query encoder, its copy as key encoder."""
    from mixiqa.models.backbones import create_backbone

    backbone = create_backbone(cfg.backbone, weights=cfg.weights)
    if backbone.is_vit:
        raise ConfigError(f"pretrain backbone '{cfg.backbone}' is a ViT; use a CNN "
                          "(efficientnet_lite0, resnet50, ...).")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # the projection head's initial weights
    encoder = ProjectedEncoder(backbone, cfg.proj_hidden, cfg.proj_dim)
    return MoCo(encoder, cfg.queue, cfg.momentum, cfg.temperature, generator=gen)


def build_optimizer(cfg: PretrainConfig, moco: MoCo):
    """SGD (momentum 0.9) with linear warm-up, then cosine decay to 0 at ``cfg.steps``."""
    opt = torch.optim.SGD(moco.encoder_q.parameters(), lr=cfg.lr, momentum=0.9,
                          weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)  # readers see the old checkpoint or the whole new one


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(path: Path, cfg: PretrainConfig, moco: MoCo, opt, sched, info: dict) -> None:
    _atomic_save({"config": cfg.to_dict(), "moco": moco.state_dict(),
                  "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                  "torch_rng": torch.get_rng_state(), "info": info}, path)


def load_checkpoint(path: Path, cfg: PretrainConfig, moco: MoCo, opt, sched) -> dict:
    """Restore a run's state in place; returns its info (step, losses, seconds)."""
    state = torch.load(path, map_location="cpu", weights_only=True)  # tensors, no objects
    check_resumable(state["config"], cfg)
    moco.load_state_dict(state["moco"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return state["info"]


def save_encoder(path: Path, cfg: PretrainConfig, moco: MoCo, steps: int) -> None:
    """The query encoder's timm state dict, as ``create_backbone(weights=path)`` reads it."""
    sd = {k: v.detach().cpu().contiguous() for k, v in
          moco.encoder_q.backbone.model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    safetensors.torch.save_file(sd, str(tmp), metadata={
        "backbone": cfg.backbone, "source": "mixiqa pretrain (Re-IQA quality encoder)",
        "steps": str(steps), "mixiqa_version": __version__})
    os.replace(tmp, path)


def write_info(out: Path, cfg: PretrainConfig, info: dict, n_images: int, device: str,
               finished: bool) -> None:
    steps = info["step"]
    _atomic_text(out / INFO_FILE, json.dumps({
        "config": cfg.to_dict(), "steps": steps, "finished": finished, "images": n_images,
        "views_per_step": cfg.batch_images * cfg.versions * len(cfg.scales),
        "seconds": round(info["seconds"], 1), "device": device,
        "steps_per_second": round(steps / info["seconds"], 4) if info["seconds"] else None,
        "loss": info["losses"], "mixiqa_version": __version__}, indent=1))


def _loader(paths: list[str], cfg: PretrainConfig, moco: MoCo, start: int) -> DataLoader:
    """Batches of steps ``start..cfg.steps-1``, in order, whatever the worker count."""
    bb = moco.encoder_q.backbone
    b = cfg.batch_images
    return DataLoader(QualityViews(paths, cfg, bb.mean, bb.std), batch_size=b,
                      sampler=range(start * b, cfg.steps * b), num_workers=cfg.workers,
                      prefetch_factor=2 if cfg.workers else None)


def pretrain(cfg: PretrainConfig, images: str | Path, out: str | Path, resume: bool = False,
             stop_at: int | None = None, log=print) -> dict:
    """Run (or resume) a pretraining; returns the run's info (step, losses, seconds).

    Args:
        images: Folder searched recursively for image files.
        out: Run folder.
        resume: Continue from ``out/checkpoint.pt`` (a missing one starts afresh).
        stop_at: Stop after this step as an interruption would, checkpoint written
            (for time-boxed runs and tests); None runs to ``cfg.steps``.
    """
    from mixiqa.experiment import resolve_device

    out = Path(out)
    ckpt = out / CHECKPOINT_FILE
    if ckpt.exists() and not resume:
        raise ConfigError(f"'{out}' already holds a pretraining checkpoint; pass --resume to "
                          "continue it, or choose a new --out.")
    out.mkdir(parents=True, exist_ok=True)
    paths, device = find_images(images), resolve_device(cfg.device)
    # on the device before the optimiser exists: loaded optimiser state follows the weights
    moco = build_moco(cfg).to(device, memory_format=torch.channels_last)  # ~1.5x faster on CPU
    opt, sched = build_optimizer(cfg, moco)
    info = {"step": 0, "losses": [], "seconds": 0.0}
    if resume and ckpt.exists():
        info = load_checkpoint(ckpt, cfg, moco, opt, sched)
        log(f"resuming from step {info['step']} of {cfg.steps}")
    cfg.save(out / "config.yaml")
    _train_steps(cfg, moco, opt, sched, paths, info, out, device, stop_at)
    if info["step"] >= cfg.steps:
        save_encoder(out / ENCODER_FILE, cfg, moco, info["step"])
    write_info(out, cfg, info, len(paths), device, finished=info["step"] >= cfg.steps)
    return info


def _train_steps(cfg: PretrainConfig, moco: MoCo, opt, sched, paths: list[str], info: dict,
                 out: Path, device: str, stop_at: int | None) -> None:
    """The loop: views -> MoCo loss -> SGD step; checkpoints every ``checkpoint_every``."""
    moco.train()
    if cfg.freeze_bn:
        freeze_batchnorm(moco)
    amp = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.startswith("cuda"))
    start, last = info["step"], min(cfg.steps, stop_at or cfg.steps)
    bar = progress(_loader(paths, cfg, moco, start), total=cfg.steps, initial=start,
                   desc="pretraining")
    t0 = time.perf_counter()
    for batch in bar:
        x = batch.flatten(0, 1).to(device, non_blocking=True)         # (N, 2, 3, c, c)
        xq, xk = (x[:, i].contiguous(memory_format=torch.channels_last) for i in (0, 1))
        with amp:
            loss = moco(xq, xk)
        if not torch.isfinite(loss):
            raise ConfigError(f"pretraining loss is {loss.item()} at step {info['step'] + 1}; "
                              f"lower lr (now {cfg.lr:g}) and start again.")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        info["step"] += 1
        info["losses"].append(round(loss.item(), 5))
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        if info["step"] % cfg.checkpoint_every == 0 or info["step"] >= last:
            info["seconds"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            save_checkpoint(out / CHECKPOINT_FILE, cfg, moco, opt, sched, info)
            write_info(out, cfg, info, len(paths), device, finished=False)
        if info["step"] >= last:
            break


# ---- CLI ----------------------------------------------------------------------------

def add_pretrain_command(sub) -> None:
    """Add ``mixiqa pretrain`` to the CLI's subparsers."""
    p = sub.add_parser(
        "pretrain", help="Re-IQA quality-aware contrastive pretraining of an encoder",
        description="MoCo-v2 with Re-IQA's quality-aware views (distorted versions x scales x "
                    "overlapping crop pairs) on every image under --images; no scores used. "
                    "Writes OUT/encoder.safetensors for the reiqa-* methods.")
    p.add_argument("config", help="YAML pretraining file, e.g. configs/reiqa_pretrain.yaml")
    p.add_argument("--images", required=True, help="folder searched recursively for images")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out from its checkpoint")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set steps=200 (repeatable)")
    p.set_defaults(func=cmd_pretrain)


def cmd_pretrain(args) -> int:
    cfg = load_pretrain_config(args.config, args.set)
    info = pretrain(cfg, args.images, args.out, resume=args.resume)
    losses = info["losses"]
    tail = losses[-max(1, len(losses) // 10):]
    print(f"{info['step']} steps in {info['seconds']:.0f} s; loss {losses[0]:.3f} at the start, "
          f"{sum(tail) / len(tail):.3f} over the last {len(tail)} steps")
    print(f"encoder: {Path(args.out) / ENCODER_FILE}")
    return 0
