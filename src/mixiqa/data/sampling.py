"""Batch samplers for mixed datasets: per-dataset quotas, or k domains x n images.

Both yield lists of indices and are deterministic given (seed, epoch), so an interrupted
run that resumes at epoch e draws exactly the batches it would have drawn.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from mixiqa.errors import ConfigError


def _cycle(rng: np.random.Generator, idx: np.ndarray) -> Iterator[int]:
    """Endless reshuffled passes over ``idx``: small datasets are oversampled, never dropped."""
    while True:
        yield from rng.permutation(idx)


def _passes(rng: np.random.Generator, idx: np.ndarray, n: int) -> np.ndarray:
    """The first ``n`` items of reshuffled passes over ``idx``, drawn at once (vectorised)."""
    reps = -(-n // len(idx))                                       # ceil(n / len(idx))
    return np.concatenate([rng.permutation(idx) for _ in range(reps)])[:n]


class MixedBatchSampler:
    """Batches that hold every dataset in fixed proportions.

    Args:
        domain_index: Domain (dataset) index of each sample, shape (N,).
        batch_size: Samples per batch.
        quotas: ``"equal"`` (each domain gets batch_size / k), ``"proportional"`` (to its
            size) or a list of per-domain counts summing to ``batch_size``.
        epoch_size: Samples per epoch (default: N, so an epoch sees about every image once).
        seed: Base seed; each epoch draws from ``(seed, epoch)``.
    """

    def __init__(self, domain_index: Sequence[int], batch_size: int,
                 quotas: str | Sequence[int] = "proportional", epoch_size: int | None = None,
                 seed: int = 0):
        self.domain_index = np.asarray(domain_index)
        self.domains = np.unique(self.domain_index)
        self.batch_size = batch_size
        self.quotas = self._quotas(quotas)
        self.epoch_size = epoch_size or len(self.domain_index)
        self.seed = seed
        self.epoch = 0

    def _quotas(self, quotas) -> list[int]:
        k = len(self.domains)
        if self.batch_size < k:
            raise ConfigError(f"batch_size {self.batch_size} is smaller than the {k} datasets "
                              "mixed in each batch; raise batch_size.")
        if quotas == "equal":
            sizes = np.ones(k)
        elif quotas == "proportional":
            sizes = np.array([(self.domain_index == d).sum() for d in self.domains], float)
        else:
            q = [int(x) for x in quotas]
            if len(q) != k or sum(q) != self.batch_size:
                raise ConfigError(f"quotas {q} must give one count per dataset ({k}) summing "
                                  f"to batch_size {self.batch_size}.")
            return q
        # largest-remainder rounding with at least one sample of every domain
        raw = sizes / sizes.sum() * (self.batch_size - k)
        q = np.floor(raw).astype(int) + 1
        for i in np.argsort(-(raw - np.floor(raw)))[: self.batch_size - q.sum()]:
            q[i] += 1
        return q.tolist()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, self.epoch_size // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        n = len(self)
        # per domain: its quota for every batch of the epoch, (n, q_k)
        draws = [_passes(rng, np.flatnonzero(self.domain_index == d), n * q).reshape(n, q)
                 for d, q in zip(self.domains, self.quotas)]
        batches = np.concatenate(draws, axis=1)                       # (n, batch_size)
        for b in batches:
            yield rng.permutation(b).tolist()


class DomainBatchSampler:
    """SIND scene sampling: each batch holds ``k`` domains x ``n`` images of each.

    Reference: SIND (TCSVT 2025), "scene sampling", k = 2 domains per GPU.
    """

    def __init__(self, domain_index: Sequence[int], k: int = 2, n: int = 16,
                 epoch_size: int | None = None, seed: int = 0):
        self.domain_index = np.asarray(domain_index)
        self.domains = np.unique(self.domain_index)
        if k > len(self.domains):
            raise ConfigError(f"k={k} domains per batch but only {len(self.domains)} domains "
                              "in the data; lower k.")
        self.k, self.n = k, n
        self.epoch_size = epoch_size or len(self.domain_index)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, self.epoch_size // (self.k * self.n))

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        streams = {d: _cycle(rng, np.flatnonzero(self.domain_index == d)) for d in self.domains}
        for _ in range(len(self)):
            chosen = rng.choice(self.domains, size=self.k, replace=False)
            yield [int(next(streams[d])) for d in chosen for _ in range(self.n)]
