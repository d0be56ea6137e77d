"""Copy trained models into the package as the default model, with its output scale.

    uv run mixiqa train configs/default_model.yaml --out runs/default_model
    uv run mixiqa train configs/default_model.yaml --out runs/default_model-tail2 \\
        --set model.train_tail=2 --set train.layer_decay=0.3
    uv run python benchmarks/ship_default_model.py runs/default_model runs/default_model-tail2

One run ships as a plain model; several ship as an ensemble (mixiqa.models.ensemble) whose
score is the mean of theirs on a dataset's scale, each member stored with the experiment
config it was trained with (as this version of mixiqa reads it, dataset roots left out).
The shipped model reports scores on CLIVE's MOS scale, clipped to 0-100 (higher is better);
`mixiqa score --scale biq2021` or `--scale q` choose otherwise.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from mixiqa.errors import DataError, run_command
from mixiqa.models.ensemble import make_ensemble, member_from_run
from mixiqa.models.iqa import save_model

DEST = Path(__file__).resolve().parents[1] / "src" / "mixiqa" / "assets" / "default_model"
OUTPUT = {"scale": "clive", "clip": [0.0, 100.0]}
KEEP = {"README.md"}         # the terms and recipe, written by hand


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished `mixiqa train` run folders")
    args = ap.parse_args(argv)
    tmp = DEST.parent / ".default_model.new"
    shutil.rmtree(tmp, ignore_errors=True)
    if len(args.runs) == 1:
        model, recipe = member_from_run(args.runs[0])
        if "config" not in recipe:
            raise DataError(f"No config.yaml in or above '{args.runs[0]}': ship a folder "
                            "written by `mixiqa train`, so the model's recipe goes with it.")
        model.meta["output"] = OUTPUT
        save_model(model, tmp)
    else:        # the shipped model's recipes go with it: need_config
        make_ensemble(args.runs, tmp, reference=OUTPUT["scale"], output=OUTPUT,
                      need_config=True)
    for old in DEST.iterdir():                      # replace everything but the README
        if old.name not in KEEP:
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    for new in tmp.iterdir():
        new.rename(DEST / new.name)
    tmp.rmdir()
    print(f"shipped {', '.join(map(str, args.runs))} -> {DEST}")


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
