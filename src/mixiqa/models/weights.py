"""Weight files for the backbones: tensors only, checked against the model before loading.

A source is ``offline``, ``hub``, ``none`` or a ``.safetensors`` / ``.pth`` file; a file is
read without unpickling objects and loaded by name (every tensor present, same shape) or,
for lukemelas-style EfficientNet files whose names differ, by order with shapes checked.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from mixiqa.errors import ConfigError

_SOURCES = ("offline", "hub", "none")
_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")


def check_source(weights: str | Path) -> str:
    w = str(weights)
    if w in _SOURCES:
        return w
    p = Path(w).expanduser()
    if not p.is_file() or p.suffix.lower() not in _SUFFIXES:
        raise ConfigError(f"weights={w!r} is neither 'offline', 'hub', 'none' nor an existing "
                          f"weight file ({', '.join(_SUFFIXES)}). Give one of those.")
    return str(p)


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or .pth; refuses anything but tensors."""
    try:
        if path.lower().endswith(".safetensors"):
            return safetensors.torch.load_file(path)
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, safetensors.SafetensorError) as e:
        raise ConfigError(f"'{path}' is not a readable tensor-only state dict ({e}). mixiqa "
                          "never unpickles Python objects: re-save the state dict with "
                          "safetensors.torch.save_file.") from e
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(f"'{path}' is not a state dict (a mapping of names to tensors).")
    return sd


def load_matching(model: nn.Module, sd: dict[str, torch.Tensor], source: str,
                  ignore: tuple[str, ...] = ()) -> None:
    """Load by name; every tensor of the model must be present with its shape."""
    for prefix in ("module.", "model."):  # DataParallel / a saved Backbone
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    target = model.state_dict()
    skip = lambda k: any(k == p or k.startswith(p + ".") for p in ignore)  # noqa: E731
    problems = {
        "missing": [k for k in target if k not in sd],
        "unexpected": [k for k in sd if k not in target and not skip(k)],
        "wrong shape": [k for k in target if k in sd and sd[k].shape != target[k].shape],
    }
    found = {kind: keys for kind, keys in problems.items() if keys}
    if found:
        what = "; ".join(f"{len(v)} {kind} (e.g. {v[0]})" for kind, v in found.items())
        raise ConfigError(f"Weights '{source}' do not fit {type(model).__name__}: {what}. "
                          "Pass the state dict of the same architecture.")
    model.load_state_dict({k: sd[k] for k in target})


def load_by_order(model: nn.Module, sd: dict[str, torch.Tensor], source: str,
                  drop_prefix: str) -> None:
    """Load a state dict whose names differ (lukemelas style) by tensor order.

    Each pair must agree in shape and in the last name part (weight, bias, running_mean...).
    The classifier (``drop_prefix``) is dropped when the model has none.
    """
    target = model.state_dict()
    src = list(sd.items())
    if len(src) != len(target):
        src = [(k, v) for k, v in src if not k.startswith(drop_prefix)]
    bad = [f"{k} {tuple(v.shape)} vs {t} {tuple(target[t].shape)}"
           for (k, v), t in zip(src, target)
           if v.shape != target[t].shape or k.rsplit(".", 1)[-1] != t.rsplit(".", 1)[-1]]
    if len(src) != len(target) or bad:
        detail = bad[0] if bad else f"{len(src)} tensors for {len(target)}"
        raise ConfigError(f"Weights '{source}' do not fit {type(model).__name__} in order: "
                          f"{detail}. The file is not this architecture's weights.")
    model.load_state_dict({t: v for (_, v), t in zip(src, target)})


def file_sha256(path: str) -> str:
    from mixiqa.features import file_hash

    return file_hash(path)


def fingerprint(model: nn.Module) -> str:
    """Cheap id of random weights: two random inits differ in every tensor's first values."""
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(f"{k}{tuple(v.shape)}".encode())
        h.update(v.detach().flatten()[:256].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]
