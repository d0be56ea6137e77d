"""The one dataset class: manifest rows -> (image tensor, target, dataset index)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mixiqa.data.manifest import Record


class IQADataset(Dataset):
    """Images of any mix of datasets, with targets already on the training scale.

    Args:
        records: Manifest rows.
        transform: ``transform(path, rng) -> tensor`` (see :mod:`mixiqa.data.transforms`).
        targets: One training target per record (e.g. the score rescaled to [0, 10]).
        domains: Dataset (or scene) names; each record's domain index goes with it.
        seed: Seed of the random crops; each (epoch, index) pair gets its own stream so a
            resumed run draws the same crops as an uninterrupted one.
    """

    def __init__(self, records: Sequence[Record], transform: Callable,
                 targets: Sequence[float] | None = None, domains: Sequence[str] = (),
                 domain_of: Callable[[Record], str] = lambda r: r.dataset, seed: int = 0):
        self.records = list(records)
        self.transform = transform
        self.targets = np.asarray(targets if targets is not None
                                  else [r.score for r in self.records], dtype=np.float32)
        self.domains = list(domains) or list(dict.fromkeys(domain_of(r) for r in self.records))
        self.domain_index = np.array([self.domains.index(domain_of(r)) for r in self.records])
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        r = self.records[i]
        return {"image": self.transform(r.path, rng),
                "target": torch.tensor(self.targets[i]),
                "std": torch.tensor(np.nan if r.std is None else r.std, dtype=torch.float32),
                "domain": torch.tensor(self.domain_index[i]),
                "index": torch.tensor(i)}
