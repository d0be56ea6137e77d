"""Tiny generated datasets shared by the integration tests."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def make_set(root, name: str, n: int, transform, seed: int, size: int = 72) -> dict:
    """A generic-CSV dataset of blurred noise images (quality = sharpness); scores are
    ``transform(quality)``. Returns its entry for an experiment config's ``datasets``."""
    rng = np.random.default_rng(seed)
    (root / name).mkdir(parents=True)
    rows = ["image,score"]
    for i in range(n):
        quality = rng.uniform(0, 1)
        base = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
        base.filter(ImageFilter.GaussianBlur(3 * (1 - quality))).save(root / name / f"{i}.png")
        rows.append(f"{name}/{i}.png,{transform(quality):.5f}")
    (root / f"{name}.csv").write_text("\n".join(rows) + "\n")
    return {"name": "csv", "root": str(root), "options": {"file": f"{name}.csv", "name": name}}
