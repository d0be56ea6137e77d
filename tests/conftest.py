"""Shared fixtures: where the real data lives, and tiny images made on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The real subsets of CLIVE and BIQ2021 sit beside the repository (never inside it).
SHARED_DATA = Path(os.environ.get("MIXIQA_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The ``../shared/data`` folder; tests using it skip with a reason when it is absent."""
    if not (SHARED_DATA / "CLIVE").is_dir() or not (SHARED_DATA / "BIQ2021").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (a newcomer's clone); CI has it")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _quiet_progress(monkeypatch):
    monkeypatch.setenv("MIXIQA_QUIET", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits on a busy 2-core machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
