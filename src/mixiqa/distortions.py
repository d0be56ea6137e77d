"""Synthetic distortions: 18 types x 5 levels (1 mild .. 5 severe), as plain functions.

Every distortion is ``fn(img, level, rng) -> img`` on float32 (H, W, 3) images in [0, 1];
codecs and filters come from Pillow, SciPy and scikit-image. Two users: the synthetic
alignment benchmark (:mod:`mixiqa.synth`) and Re-IQA's quality-aware augmentation.
Levels are chosen so that a full-reference measure (SSIM vs the clean image) falls from
level 1 to 5 for every type (``tests/test_distortions.py`` checks it).

Reference: the level ladders follow the spirit of KADID-10k (Lin, Hosu, Saupe, QoMEX
2019) and Re-IQA's augmentation bank (Saha, Mishra, Bovik, CVPR 2023).
"""

from __future__ import annotations

import io
from typing import Callable, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage, signal

from mixiqa.errors import ConfigError, DataError
from mixiqa.registry import Registry

Distortion = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
DISTORTIONS: Registry[Distortion] = Registry("distortion")
LEVELS = (1, 2, 3, 4, 5)


def _pick(values: Sequence, level: int):
    return values[level - 1]


# ---- Pillow round trips ---------------------------------------------------------------

def to_pil(img: np.ndarray) -> Image.Image:
    """float [0, 1] (H, W, 3) -> 8-bit RGB image (rounded, not truncated)."""
    return Image.fromarray(np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8), "RGB")


def from_pil(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0


def _codec(img: np.ndarray, fmt: str, **params) -> np.ndarray:
    buf = io.BytesIO()
    to_pil(img).save(buf, format=fmt, **params)
    buf.seek(0)
    with Image.open(buf) as im:
        return from_pil(im)


# ---- blur -------------------------------------------------------------------------------

def _convolve(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Per-channel convolution with reflected borders (no dark frame), via FFT."""
    kernel = kernel / kernel.sum()
    kh, kw = kernel.shape
    pad = ((kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2), (0, 0))
    padded = np.pad(img, pad, mode="reflect")                       # (H+kh-1, W+kw-1, 3)
    return signal.fftconvolve(padded, kernel[:, :, None], mode="valid", axes=(0, 1))


@DISTORTIONS.register("gaussian_blur")
def gaussian_blur(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    sigma = _pick((0.7, 1.3, 2.2, 3.5, 5.5), level)
    return ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0), mode="reflect")


@DISTORTIONS.register("motion_blur")
def motion_blur(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """A straight camera shake of a random direction; the length sets the level."""
    from skimage.draw import line_aa

    length = _pick((5, 7, 11, 17, 25), level)   # odd: the kernel has a centre pixel
    angle = rng.uniform(0.0, np.pi)
    c = r = (length - 1) / 2.0
    kernel = np.zeros((length, length), np.float32)
    rr, cc, val = line_aa(int(round(c - r * np.sin(angle))), int(round(c - r * np.cos(angle))),
                          int(round(c + r * np.sin(angle))), int(round(c + r * np.cos(angle))))
    ok = (rr >= 0) & (rr < length) & (cc >= 0) & (cc < length)
    kernel[rr[ok], cc[ok]] = val[ok]
    return _convolve(img, kernel)


@DISTORTIONS.register("defocus_blur")
def defocus_blur(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Lens defocus: a uniform disk kernel (the pill-box PSF)."""
    from skimage.morphology import disk

    radius = _pick((1, 2, 3, 5, 7), level)
    return _convolve(img, disk(radius).astype(np.float32))


# ---- noise ------------------------------------------------------------------------------

@DISTORTIONS.register("white_noise")
def white_noise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Additive white Gaussian noise, independent per RGB channel."""
    sd = _pick((0.02, 0.04, 0.07, 0.11, 0.17), level)
    return img + rng.normal(0.0, sd, img.shape)


@DISTORTIONS.register("chroma_noise")
def chroma_noise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise in the Cb and Cr channels only (colour blotches, luma intact)."""
    from skimage.color import rgb2ycbcr, ycbcr2rgb

    sd = _pick((5.0, 10.0, 17.0, 27.0, 42.0), level)   # YCbCr units (chroma spans 16..240)
    ycc = rgb2ycbcr(img)                                    # (H, W, 3): Y, Cb, Cr
    ycc[..., 1:] += rng.normal(0.0, sd, ycc[..., 1:].shape)
    return ycbcr2rgb(ycc)


@DISTORTIONS.register("impulse_noise")
def impulse_noise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise on a fraction of the samples."""
    from skimage.util import random_noise

    amount = _pick((0.01, 0.03, 0.06, 0.11, 0.2), level)
    return random_noise(img, mode="s&p", amount=amount, rng=rng)


@DISTORTIONS.register("speckle_noise")
def speckle_noise(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative noise: img * (1 + n), n ~ N(0, var)."""
    from skimage.util import random_noise

    var = _pick((0.01, 0.03, 0.07, 0.14, 0.3), level)
    return random_noise(img, mode="speckle", var=var, rng=rng)


# ---- compression ------------------------------------------------------------------------

@DISTORTIONS.register("jpeg")
def jpeg(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    return _codec(img, "JPEG", quality=_pick((40, 20, 10, 6, 3), level))


@DISTORTIONS.register("jpeg2000")
def jpeg2000(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """JPEG 2000 (Pillow's OpenJPEG) at a target PSNR.

    A PSNR target, not a compression ratio: on small images a fixed ratio hits the
    codestream's header size and the top levels collapse into one.
    """
    psnr = _pick((33.0, 29.0, 26.0, 23.5, 21.0), level)
    return _codec(img, "JPEG2000", quality_mode="dB", quality_layers=[psnr], irreversible=True)


@DISTORTIONS.register("webp")
def webp(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    return _codec(img, "WEBP", quality=_pick((25, 12, 6, 3, 0), level), method=4)


# ---- tone and colour --------------------------------------------------------------------

def _luma(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], np.float32)   # (H, W)


@DISTORTIONS.register("contrast_decrease")
def contrast_decrease(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Blend towards the mean grey level."""
    alpha = _pick((0.75, 0.58, 0.42, 0.28, 0.16), level)
    return img.mean() + alpha * (img - img.mean())


@DISTORTIONS.register("darken")
def darken(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """A gamma curve that crushes the shadows."""
    return img ** _pick((1.5, 2.0, 2.7, 3.6, 5.0), level)


@DISTORTIONS.register("brighten")
def brighten(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """The mirrored gamma curve: lifts the shadows, washes out the highlights."""
    return 1.0 - (1.0 - img) ** _pick((1.5, 2.0, 2.7, 3.6, 5.0), level)


@DISTORTIONS.register("desaturate")
def desaturate(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Blend towards the luma image (level 5 is grey)."""
    keep = _pick((0.6, 0.4, 0.22, 0.1, 0.0), level)
    grey = _luma(img)[..., None]                                # (H, W, 1)
    return grey + keep * (img - grey)


@DISTORTIONS.register("oversaturate")
def oversaturate(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Push colours away from grey (Pillow's colour enhancer, factor > 1; clipped)."""
    from PIL import ImageEnhance

    factor = _pick((1.6, 2.3, 3.2, 4.5, 7.0), level)
    return from_pil(ImageEnhance.Color(to_pil(img)).enhance(factor))


@DISTORTIONS.register("color_quantize")
def color_quantize(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """An octree palette of a few colours, without dithering (median cut is 100x slower)."""
    colors = _pick((48, 24, 12, 6, 3), level)
    pal = to_pil(img).quantize(colors, method=Image.Quantize.FASTOCTREE,
                               dither=Image.Dither.NONE)
    return from_pil(pal)


# ---- spatial ----------------------------------------------------------------------------

@DISTORTIONS.register("pixelate")
def pixelate(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Box-downsample by a factor, then nearest-neighbour upsample back."""
    factor = _pick((3, 4, 6, 8, 12), level)   # 2 hides in HaarPSI's 2x subsampling
    im = to_pil(img)
    small = im.resize((max(1, im.width // factor), max(1, im.height // factor)), Image.BOX)
    return from_pil(small.resize(im.size, Image.NEAREST))


@DISTORTIONS.register("oversharpen")
def oversharpen(img: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Unsharp masking pushed too far (Pillow's filter): halos and clipped edges."""
    from PIL import ImageFilter

    percent = _pick((150, 300, 500, 800, 1300), level)
    return from_pil(to_pil(img).filter(ImageFilter.UnsharpMask(2, percent, 0)))


# ---- public API -------------------------------------------------------------------------

def distortion_names() -> list[str]:
    """Every registered distortion type, sorted."""
    return DISTORTIONS.names()


def check_image(img: np.ndarray) -> np.ndarray:
    """The image as float32 (H, W, 3); anything else is a DataError."""
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or min(arr.shape[:2]) < 2:
        raise DataError(f"Distortions take an (H, W, 3) RGB image, got shape {arr.shape}. "
                        "Convert it with PIL .convert('RGB') and np.asarray(...) / 255.")
    return arr.astype(np.float32, copy=False)


def distort(img: np.ndarray, name: str, level: int,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """Apply one distortion.

    Args:
        img: float32 (H, W, 3) image in [0, 1].
        name: A type from :func:`distortion_names`.
        level: 1 (mild) .. 5 (severe).
        rng: Randomness (noise, blur direction); None means ``default_rng(0)``, so a
            call is reproducible by default.

    Returns:
        The distorted image, float32 (H, W, 3), clipped to [0, 1].

    Raises:
        ConfigError: unknown name (with the valid ones) or level outside 1..5.
    """
    fn = DISTORTIONS.get(name)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level not in LEVELS:
        raise ConfigError(f"Distortion level {level!r} is not valid; use an integer 1 (mild) "
                          f"to 5 (severe), one of {list(LEVELS)}.")
    rng = np.random.default_rng(0) if rng is None else rng
    out = fn(check_image(img), int(level), rng)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def random_distortion(img: np.ndarray, rng: np.random.Generator,
                      compose_prob: float = 0.0) -> tuple[np.ndarray, list[tuple[str, int]]]:
    """A random type at a random level; with probability ``compose_prob`` two in a row.

    Returns:
        The distorted image and the applied ``(name, level)`` pairs, in order.
    """
    if not 0.0 <= compose_prob <= 1.0:
        raise ConfigError(f"compose_prob={compose_prob} must lie in [0, 1].")
    names = distortion_names()
    count = 2 if rng.random() < compose_prob else 1
    picked = rng.choice(len(names), size=count, replace=False)   # two different types
    applied = []
    for i in picked:
        name, level = names[int(i)], int(rng.integers(1, 6))
        img = distort(img, name, level, rng)
        applied.append((name, level))
    return img, applied
