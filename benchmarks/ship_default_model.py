"""Copy a trained model into the package as the default model, with its output scale.

    uv run mixiqa train configs/default_model.yaml --out runs/default_model
    uv run python benchmarks/ship_default_model.py runs/default_model

The shipped model reports scores on CLIVE's MOS scale through its CLIVE mapper, clipped to
0-100 (higher is better); `mixiqa score --scale biq2021` or `--scale q` choose otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mixiqa.errors import run_command
from mixiqa.models.iqa import (load_model, read_meta, resolve_model_folder, save_model,
                               tail_prefixes)

DEST = Path(__file__).resolve().parents[1] / "src" / "mixiqa" / "assets" / "default_model"


def main() -> None:
    src = resolve_model_folder(Path(sys.argv[1]))
    # a model with trained tail blocks (model.train_tail) carries them over its backbone
    model = load_model(src, with_backbone=bool(tail_prefixes(read_meta(src))))
    model.meta["output"] = {"scale": "clive", "clip": [0.0, 100.0]}
    for f in ("model.json", "model.safetensors"):    # README.md (terms, recipe) stays
        (DEST / f).unlink(missing_ok=True)
    save_model(model, DEST)
    print(f"shipped {src} -> {DEST}")


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
