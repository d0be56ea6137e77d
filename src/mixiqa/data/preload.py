"""Fine-tuning inputs decoded once and kept on the training device (``train.preload``).

The default fine-tuning path (:class:`mixiqa.train.ImageInputs`) decodes and crops every
image in DataLoader workers at every epoch. On a GPU that is the bottleneck: Lite0 trains
on a 384 x 384 crop far faster than a CPU core decodes a JPEG. Here every image of a split
is decoded once (a thread pool: Pillow releases the GIL), kept as uint8 on the device, and
each batch's random crops are cut there. The crops are the ones the worker path draws (same
``(seed, epoch, index)`` streams, same boxes), so the two paths train on the same pixels.

Memory: a 512 x 512 image is 0.79 MB as uint8; CLIVE + BIQ2021 (4627 images) take ~3.6 GB.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from mixiqa.data.manifest import Manifest
from mixiqa.data.transforms import Transform, as_chw
from mixiqa.errors import ConfigError
from mixiqa.progress import progress


def decode_all(paths: list[str], load, device, threads: int | None = None,
               desc: str = "decoding") -> list[torch.Tensor]:
    """``load(path) -> (3, H, W) uint8`` for every path, in order, moved to ``device``."""
    threads = threads or min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(threads) as pool:
        return [x.to(device) for x in progress(pool.map(load, paths), total=len(paths),
                                               desc=desc)]


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    """Channels-last batches on a GPU: the convolutions that follow keep the layout, and
    cuDNN's bf16 kernels run faster on it. On a CPU the layout stays, so a preloaded run
    there matches the worker path (NHWC convolutions round differently)."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x


class PreloadedImages:
    """Every image of every split part on ``device`` as uint8, decoded once.

    Training images keep the train transform's deterministic part (resize, upscale to fit
    the crop); the random crop is cut per batch. Evaluation images are the eval transform's
    full output. Batches leave here normalised, on ``device``.

    Args:
        rows: Split part -> its rows (``train``, ``val``, ``test``).
        train_tf, eval_tf: The fine-tuning transforms (random crop; whole image or centre).
        device: Where the images live and the model trains.
        seed: Crop seed (``train.seed``), as in :class:`mixiqa.data.imageset.IQADataset`.
        eval_batch: Images per evaluation batch (consecutive images of one size).
    """

    frozen = False

    def __init__(self, rows: dict[str, Manifest], train_tf: Transform, eval_tf: Transform,
                 device, seed: int = 0, eval_batch: int = 32, threads: int | None = None):
        if train_tf.mode != "random" or train_tf.crop is None:
            raise ConfigError("train.preload cuts random crops on the device: it needs a "
                              "random-crop training transform (train.train_crop set).")
        self.train_tf, self.eval_tf, self.seed, self.eval_batch = (train_tf, eval_tf, seed,
                                                                   eval_batch)
        if torch.device(device).type == "cuda":  # fixed crop shapes: cuDNN's fastest kernels
            torch.backends.cudnn.benchmark = True
        self.train = decode_all([r.path for r in rows["train"]],
                                lambda p: as_chw(train_tf.load(p)), device, threads,
                                "decoding train images")
        self.evalsets = {p: decode_all([r.path for r in rows[p]], eval_tf.pixels, device,
                                       threads, f"decoding {p} images")
                         for p in rows if len(rows[p])}

    def crop(self, i: int, epoch: int) -> torch.Tensor:
        """Image ``i``'s random crop at ``epoch``: the box IQADataset would draw, (3, c, c)."""
        x = self.train[i]
        rng = np.random.default_rng([self.seed, epoch, int(i)])
        x0, y0, x1, y1 = self.train_tf.boxes((x.shape[-1], x.shape[-2]), rng)[0]
        return x[:, y0:y1, x0:x1]

    def train_batches(self, sampler):
        for b in sampler:
            b = np.asarray(b)
            x = torch.stack([self.crop(i, sampler.epoch) for i in b])     # (B, 3, c, c) uint8
            yield _nhwc(self.train_tf.normalize(x)), b

    def eval_batches(self, part: str, batch_size: int | None = None):
        """Normalised batches of consecutive same-size images, in row order."""
        images = self.evalsets.get(part, [])
        n = batch_size or self.eval_batch
        start = 0
        while start < len(images):
            end = start + 1
            while end < len(images) and end - start < n and \
                    images[end].shape == images[start].shape:
                end += 1
            yield _nhwc(self.eval_tf.normalize(torch.stack(images[start:end])))
            start = end
