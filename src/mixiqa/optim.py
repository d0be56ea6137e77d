"""What updates the weights: optimizer groups (layer-wise decay), the learning-rate
schedule, mixed precision and the weight average; :mod:`mixiqa.train` drives them."""

from __future__ import annotations

import math
import re
import warnings

import torch
from torch import nn

from mixiqa.config import ExperimentConfig
from mixiqa.errors import ConfigError
from mixiqa.models.iqa import IQAModel


_BLOCK = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


def backbone_groups(backbone: nn.Module | None, lr: float, decay: float) -> list[dict]:
    """The backbone's trainable parameters as optimizer groups. ``decay == 1``: one group at
    ``lr``. Otherwise layer-wise decay over timm's ``blocks.i`` (EfficientNet, ViT): the last
    trainable block at ``lr``, each earlier one ``decay`` times its successor's rate, what
    comes before the first trainable block (stem, patch embedding) one step below it, what
    comes after the last (head convolution, final norm) at ``lr``."""
    named = [(n, p) for n, p in (backbone.named_parameters() if backbone is not None else [])
             if p.requires_grad]
    if not named:
        return []
    if decay == 1.0:
        return [{"params": [p for _, p in named], "lr": lr}]
    index = [int(m.group(1)) if (m := _BLOCK.search(n)) else None for n, _ in named]
    blocks = [i for i in index if i is not None]
    if not blocks:
        raise ConfigError(f"train.layer_decay {decay} needs a backbone whose layers are "
                          f"timm 'blocks.N' (EfficientNet, ViT); '{named[0][0]}' and the rest "
                          "are not. Set train.layer_decay: 1.0.")
    first, last = min(blocks), max(blocks)
    steps, inside = {}, False      # steps below the top rate -> parameters, in module order
    for (_, p), i in zip(named, index):
        inside = inside or i is not None
        step = last - i if i is not None else (0 if inside else last - first + 1)
        steps.setdefault(step, []).append(p)
    return [{"params": ps, "lr": lr * decay ** s} for s, ps in sorted(steps.items())]


def make_optimizer(model: IQAModel, cfg: ExperimentConfig, steps_per_epoch: int):
    t = cfg.train
    rest = [p for n, p in model.named_parameters()
            if not n.startswith("backbone.") and p.requires_grad]
    groups = [{"params": rest, "lr": t.lr}]
    groups += backbone_groups(model.backbone, t.lr * t.backbone_lr_mult, t.layer_decay)
    # fused: one kernel for all parameters instead of a Python loop over them; on small
    # heads over cached features the per-tensor loop was a third of each step's time
    params = [p for g in groups for p in g["params"]]
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                 for p in params)
    opt = torch.optim.AdamW(groups, lr=t.lr, weight_decay=t.weight_decay, fused=fused or None)
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


def _cpu_has_native_bf16() -> bool:
    """oneDNN's own check (AVX512-BF16 / AMX); False where torch has no such probe."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(torch.backends.mkldnn.is_available() and probe is not None and probe())
    except RuntimeError:        # an op missing from this build
        return False


def amp_setup(cfg: ExperimentConfig, device: str):
    """Training's autocast dtype and grad scaler. On a GPU (``train.amp``): bf16 where
    supported (no scaler), else fp16 + scaler. On a CPU (``train.cpu_amp``): bf16, which
    needs no scaler; evaluation and scoring stay in fp32 either way."""
    off = torch.amp.GradScaler("cuda", enabled=False)
    if not device.startswith("cuda"):
        if not cfg.train.cpu_amp:
            return None, off
        if not _cpu_has_native_bf16():
            warnings.warn("train.cpu_amp: this CPU has no native bf16 (AVX512-BF16 or AMX), "
                          "so bf16 training will be slower than fp32; set train.cpu_amp: false.",
                          stacklevel=2)
        return torch.bfloat16, off
    if not cfg.train.amp:
        return None, off
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return dtype, torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)


def make_ema(model: IQAModel, decay: float):
    """timm's exponential moving average of every float tensor of the model's state (its
    copy in ``.module``, in the model's dtype), or None for ``decay == 0``. Fused (foreach)
    updates; integer buffers are copied, not averaged."""
    if not decay:
        return None
    from timm.utils.model_ema import ModelEmaV3

    return ModelEmaV3(model, decay=decay)
