"""Image loading and the field's resize/crop policies, as small picklable callables.

Policy of MonotonicIQA (methods.md): training resizes the short side to 512 and takes
random 384 x 384 crops; testing resizes the short side to 768 (aspect kept) or averages
several crops. Every transform has a ``spec`` string that names it exactly: the feature
cache keys on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from mixiqa.errors import DataError


def open_rgb(path: str, min_side: int | None = None) -> Image.Image:
    """Decode an image as RGB; a JPEG is decoded at reduced size when that suffices.

    Args:
        path: Image file.
        min_side: If given, JPEG draft mode may decode at 1/2, 1/4 or 1/8 scale as long as
            the short side stays >= ``min_side`` (much faster for large photos).

    Raises:
        DataError: naming the file when it cannot be decoded.
    """
    try:
        im = Image.open(path)
        if min_side and im.format == "JPEG":
            w, h = im.size
            scale = min(w, h) / min_side
            if scale >= 2:
                im.draft("RGB", (math.ceil(w / scale), math.ceil(h / scale)))
        return im.convert("RGB")
    except Exception as e:  # PIL raises many types for bad files
        raise DataError(f"Cannot decode image '{path}' ({type(e).__name__}: {e}). Replace it "
                        "with an intact copy or remove it from the dataset.") from e


def resize_short(im: Image.Image, short: int) -> Image.Image:
    w, h = im.size
    s = short / min(w, h)
    if abs(s - 1) < 1e-6:
        return im
    return im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)


def ensure_min_side(im: Image.Image, side: int | None) -> Image.Image:
    """Upscale an image whose short side is below ``side`` (a crop must fit inside)."""
    return resize_short(im, side) if side and min(im.size) < side else im


def as_chw(im: Image.Image) -> torch.Tensor:
    """(H, W, 3) uint8 image -> (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)


# Pixels per forward pass on a CPU. Larger batches allocate activation buffers of hundreds
# of MB that glibc maps fresh from the kernel at every layer: at 32 images of 512 x 512
# the page faults cost more system time than the convolutions (benchmarks/README.md).
CPU_BATCH_PIXELS = 2 * 512 * 512


def same_shape_groups(tensors: list[torch.Tensor], max_pixels: int | None = None
                      ) -> list[list[int]]:
    """Indices of ``tensors`` grouped by shape, first-seen order: inputs at native
    resolution differ in size, and only tensors of one shape stack into a batch. With
    ``max_pixels``, a group is cut so that no batch holds more pixels (at least one image)."""
    groups: dict[tuple, list[int]] = {}
    for i, x in enumerate(tensors):
        groups.setdefault(tuple(x.shape), []).append(i)
    if not max_pixels:
        return list(groups.values())
    out = []
    for shape, idx in groups.items():
        n = max(1, max_pixels // (shape[-1] * shape[-2]))
        out += [idx[k:k + n] for k in range(0, len(idx), n)]
    return out


def center_crop_resized(im: Image.Image, short: int, crop: int) -> Image.Image:
    """The centre ``crop`` of ``im`` resized to short side ``short``, computing only the
    crop's pixels: Pillow resamples just the source box that maps onto them (same filter
    scale and sample positions as resizing the whole image, then cropping)."""
    w, h = im.size
    s = short / min(w, h)
    rw, rh = max(1, round(w * s)), max(1, round(h * s))       # the full resized size
    if min(rw, rh) < crop:                                     # upscale so the crop fits
        return center_crop_resized(im, crop, crop)
    if (rw, rh) == (w, h):
        x, y = (w - crop) // 2, (h - crop) // 2
        return im.crop((x, y, x + crop, y + crop))
    x, y = (rw - crop) // 2, (rh - crop) // 2
    sx, sy = w / rw, h / rh                                    # resized -> source pixels
    box = (x * sx, y * sy, (x + crop) * sx, (y + crop) * sy)
    return im.resize((crop, crop), Image.BICUBIC, box=box)


@dataclass(frozen=True)
class Transform:
    """Resize the short side, then crop.

    Attributes:
        short: Target short side in pixels (None keeps the size).
        crop: Crop size (None: the whole resized image).
        mode: ``random`` (training), ``center`` or ``grid`` (``n_crops`` crops on a grid).
        n_crops: Number of crops in ``grid`` mode.
        mean, std: Normalisation of the backbone.
        max_short: Shrink images whose short side is larger to this first (None: no limit).
    """

    short: int | None = 512
    crop: int | None = 384
    mode: str = "random"
    n_crops: int = 1
    mean: tuple = (0.485, 0.456, 0.406)
    std: tuple = (0.229, 0.224, 0.225)
    max_short: int | None = None

    @property
    def spec(self) -> str:
        cap = f"-max{self.max_short}" if self.max_short else ""
        return (f"short{self.short}-crop{self.crop}-{self.mode}{self.n_crops}-"
                f"mean{','.join(f'{m:g}' for m in self.mean)}-"
                f"std{','.join(f'{s:g}' for s in self.std)}"
                + cap)

    def load(self, path: str) -> Image.Image:
        # draft decoding only when resizing anyway: a crop at native resolution must see
        # native pixels, whatever the file format
        im = open_rgb(path, min_side=self.short or self.max_short)
        short = self.short
        if short is None and self.max_short and min(im.size) > self.max_short:
            short = self.max_short              # native pixels unless larger than the cap
        im = resize_short(im, short) if short else im
        return ensure_min_side(im, self.crop)

    def __call__(self, path: str, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Image file -> (3, crop, crop), or (n_crops, 3, crop, crop) in grid mode."""
        return self.normalize(self.pixels(path, rng))

    def pixels(self, path: str, rng: np.random.Generator | None = None) -> torch.Tensor:
        """Like ``__call__`` but uint8 and not normalised: a decoding worker hands a quarter
        of the bytes to the model process, which normalises whole batches at once."""
        if self.mode == "center" and self.crop and self.short:
            return as_chw(center_crop_resized(open_rgb(path, min_side=self.short),
                                              self.short, self.crop))
        im = self.load(path)
        if self.crop is None:
            return as_chw(im)
        crops = [as_chw(im.crop(b)) for b in self.boxes(im.size, rng)]
        return crops[0] if self.mode != "grid" else torch.stack(crops)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (..., 3, H, W) -> normalised float, one pass: x * (1/255/std) - mean/std."""
        mean, std = (torch.tensor(v, device=x.device) for v in (self.mean, self.std))
        shape = (3, 1, 1)
        return torch.addcmul((-mean / std).view(shape), x.float(),
                             (1 / (255 * std)).view(shape))

    def boxes(self, size: tuple[int, int], rng: np.random.Generator | None) -> list[tuple]:
        w, h = size
        c = self.crop
        assert w >= c and h >= c, "load() upscales images smaller than the crop"
        if self.mode == "random":
            rng = rng or np.random.default_rng()
            x, y = int(rng.integers(0, w - c + 1)), int(rng.integers(0, h - c + 1))
            return [(x, y, x + c, y + c)]
        if self.mode == "center":
            x, y = (w - c) // 2, (h - c) // 2
            return [(x, y, x + c, y + c)]
        n = self.n_crops  # grid: crops spread evenly along the long side, centred on the short
        xs = np.linspace(0, w - c, n).round().astype(int) if w >= h else [(w - c) // 2] * n
        ys = np.linspace(0, h - c, n).round().astype(int) if h > w else [(h - c) // 2] * n
        return [(int(x), int(y), int(x) + c, int(y) + c) for x, y in zip(xs, ys)]


def train_transform(mean, std, short: int = 512, crop: int = 384) -> Transform:
    return Transform(short, crop, "random", 1, tuple(mean), tuple(std))


def eval_transform(mean, std, short: int = 768, crop: int | None = None,
                   n_crops: int = 1) -> Transform:
    mode = "grid" if n_crops > 1 else "center"
    return Transform(short, crop, mode, n_crops, tuple(mean), tuple(std))
