"""Progress bars (tqdm) that stay quiet when asked to or when output is not a terminal."""

from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "",
             enable: bool = True, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr; disabled by ``enable=False`` or MIXIQA_QUIET=1."""
    if not enable or os.environ.get("MIXIQA_QUIET") == "1":
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5, **kwargs)
