"""Data-parallel runs under ``torchrun``: one process per GPU (or per CPU slot, gloo).

mixiqa does not ship a launcher of its own. Start any command with torchrun, e.g.::

    torchrun --nproc_per_node 4 -m mixiqa train CONFIG --out RUN
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_endpoint HOST:29500 -m mixiqa score DIR -o s.csv

torchrun sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`init` then joins the
process group (NCCL on GPUs, gloo on CPUs). Training wraps the model in
:class:`torch.nn.parallel.DistributedDataParallel` and gives each rank its share of every
global batch, so the optimisation sees the same batches as a single process; rank 0 alone
writes checkpoints, results and models. Scoring gives each rank a stride of the file list
and rank 0 merges the per-rank files (see :mod:`mixiqa.score`).
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist

from mixiqa.errors import ConfigError


def requested() -> bool:
    """Whether this process was started by torchrun (or another launcher) with >1 ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "auto") -> str:
    """Join the process group when launched by torchrun; returns this rank's device.

    Args:
        device: ``auto``, ``cpu`` or ``cuda``; under torchrun ``cuda`` becomes
            ``cuda:LOCAL_RANK`` (one GPU per process).
    """
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if not requested():
        return device if device != "auto" else ("cuda" if want_cuda else "cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if want_cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs: "
                              "start at most one process per GPU (--nproc_per_node).")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    return f"cuda:{local}" if want_cuda else "cpu"


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if active():
        dist.barrier()


def shard(items: Sequence, r: int | None = None, n: int | None = None) -> list:
    """This rank's items: every n-th one starting at r (a stride keeps shards balanced)."""
    r, n = (rank() if r is None else r), (world_size() if n is None else n)
    return list(items)[r::n]


class ShardedBatches:
    """Each rank's part of every global batch of a batch sampler.

    Every rank draws the same global batch (the samplers are seeded alike); rank r keeps
    positions r, r + n, ... of the batch ordered by domain, so each rank gets its share of
    each dataset and DDP's gradient average equals the single-process batch gradient for
    per-sample losses.
    """

    def __init__(self, sampler, domain: np.ndarray, r: int, n: int):
        self.sampler, self.domain, self.r, self.n = sampler, np.asarray(domain), r, n

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.sampler.epoch

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.sampler:
            b = np.asarray(b)
            order = np.argsort(self.domain[b], kind="stable")
            yield [int(i) for i in b[order][self.r::self.n]]
