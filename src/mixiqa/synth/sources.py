"""Pristine sources of the synthetic benchmark and the latent (full-reference) quality.

Sources are named by an *origin* string: ``skimage:<photo>`` for the colour photos that
ship inside the scikit-image wheel (no download), or an image file path. Every source is
resized and centre-cropped to a square of the spec's size before it is distorted.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np
from PIL import Image

from mixiqa.data.manifest import Manifest
from mixiqa.errors import ConfigError, DataError
from mixiqa.registry import Registry

# Colour images bundled in the scikit-image wheel (skimage/data/*.png|jpg): no pooch fetch.
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle",
                  "hubble_deep_field", "immunohistochemistry", "retina")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


def skimage_sources() -> list[str]:
    return [f"skimage:{name}" for name in SKIMAGE_PHOTOS]


def folder_sources(folder: str | Path, n: int | None = None) -> list[str]:
    """The first ``n`` images of a folder (sorted by name), as origins."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"Source folder '{folder}' does not exist. Pass 'skimage', a folder "
                          "of photos, or NAME=ROOT of a catalogued dataset.")
    files = sorted(str(p.absolute()) for p in folder.iterdir()
                   if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) in '{folder}'.")
    return files[:n]


def top_rated_sources(manifest: Manifest, n: int) -> list[str]:
    """Paths of the ``n`` best-rated images (MOS high or DMOS low) of a manifest.

    Ties break by name, so the choice is reproducible.
    """
    if n < 1:
        raise ConfigError(f"top_rated_sources: n={n}; ask for at least one image.")
    ranked = sorted(manifest, key=lambda r: (-r.quality01(), r.name))
    return [r.path for r in ranked[:n]]


def resolve_sources(specs: list[str], top: int | None = None) -> list[str]:
    """Origins for CLI source arguments: ``skimage``, a folder, or ``NAME=ROOT``.

    Args:
        specs: One or more of the three forms.
        top: At most this many images per argument (the best-rated ones for NAME=ROOT).
    """
    from mixiqa.data.datasets import load_manifest

    origins: list[str] = []
    for spec in specs:
        if spec == "skimage":
            origins += skimage_sources()[:top]
        elif "=" in spec:
            name, root = spec.split("=", 1)
            manifest = load_manifest(name, root, allow_missing=True, show_progress=False)
            origins += top_rated_sources(manifest, top or len(manifest))
        else:
            origins += folder_sources(spec, top)
    if len(set(origins)) != len(origins):
        raise ConfigError("The sources list an image twice; each source must be distinct "
                          "content.")
    return origins


def load_source(origin: str, size: int) -> np.ndarray:
    """An origin as float32 (size, size, 3) in [0, 1]: short side resized, centre cropped,
    rounded to 8 bits (what the saved PNGs hold)."""
    if origin.startswith("skimage:"):
        im = Image.fromarray(_skimage_photo(origin.split(":", 1)[1]))
    else:
        try:
            with Image.open(origin) as f:
                im = f.convert("RGB")
        except Exception as e:  # PIL raises many types for bad files
            raise DataError(f"Source image '{origin}' cannot be decoded ({e}).") from e
    im = im.convert("RGB")
    scale = size / min(im.size)
    w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
    im = im.resize((w, h), Image.BICUBIC, reducing_gap=3.0)
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), np.float32) / 255.0


def _skimage_photo(name: str) -> np.ndarray:
    from skimage import data

    if name not in SKIMAGE_PHOTOS:
        raise ConfigError(f"'{name}' is not a bundled scikit-image colour photo; choose from "
                          f"{', '.join(SKIMAGE_PHOTOS)}.")
    if name == "motorcycle":
        return data.stereo_motorcycle()[0]          # the left view of the stereo pair
    return getattr(data, name)()


# ---- latent quality ---------------------------------------------------------------------

# Name -> the piq function computing it (all similarities in [0, 1], 1 = identical).
LATENTS: Registry[str] = Registry("latent quality measure")
for _name in ("haarpsi", "multi_scale_ssim", "vsi", "fsim"):
    LATENTS.register(_name, _name)


def latent_quality(ref: np.ndarray, images: np.ndarray, measure: str = "haarpsi") -> np.ndarray:
    """Full-reference similarity of each image to ``ref`` (1 = identical, higher = better).

    The default, HaarPSI, is the choice of this benchmark: among piq's full-reference
    indexes that need no downloaded weights it is one of the best correlated with human
    scores (piq's README, SRCC on TID2013 / KADID-10k: HaarPSI .87 / .89, MDSI .89 / .89,
    VSI .90 / .88, MS-SSIM .80 / .80); it sees colour (YIQ chroma channels) and ranks all 18
    distortion types of :mod:`mixiqa.distortions` monotonically by level; it works at any
    size >= 32 px,
    where MS-SSIM needs >= 161 px; and it spreads every type over a similar range,
    where MS-SSIM rates a radius-7 defocus (0.84) milder than level-2 white noise.
    Its known blind spots: it sub-samples by 2 first (so 2x pixelation is invisible to
    it, hence pixelation starts at 3x) and it weighs full desaturation heavily (.38).

    Args:
        ref: float32 (H, W, 3) pristine image in [0, 1].
        images: float32 (N, H, W, 3) distorted versions of it.
        measure: ``haarpsi`` (default), ``multi_scale_ssim``, ``vsi`` or ``fsim``.

    Reference: Reisenhofer, Bosse, Kutyniok, Wiegand, "A Haar wavelet-based perceptual
    similarity index for image quality assessment", Signal Processing: Image
    Communication 2018.
    """
    import piq
    import torch

    fn = getattr(piq, LATENTS.get(measure))
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)   # (N, 3, H, W)
    y = torch.from_numpy(np.ascontiguousarray(ref)).permute(2, 0, 1)[None].expand_as(x)
    with torch.no_grad():
        out = fn(x.clamp(0, 1), y.clamp(0, 1), data_range=1.0, reduction="none")
    return out.double().numpy().reshape(-1)
