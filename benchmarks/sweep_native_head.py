"""Head and optimiser variants of configs/native.yaml, compared on VALIDATION SRCC.

    uv run python benchmarks/sweep_native_head.py --seeds 4

Official protocol with CLIVE 60/20/20 at random and 20 % of BIQ2021's official train as
validation; MonotonicIQA mappers. Each variant trains on the same splits; the one with the
best median validation SRCC (mean over datasets) is the recipe's head. Test medians are
printed for the record only: they never choose.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mixiqa.config import load_config
from mixiqa.errors import run_command
from mixiqa.experiment import build_splits, prepare, run_splits

VARIANTS = {
    "mlp256 (quickstart head)": [],
    "mlp256, 20 epochs": ["train.epochs=20"],
    "mlp128": ["model.head_kwargs={hidden: [128], dropout: 0.2}"],
    "mlp512, dropout 0.5": ["model.head_kwargs={hidden: [512], dropout: 0.5}"],
    "mlp512, dropout 0.7": ["model.head_kwargs={hidden: [512], dropout: 0.7}"],
    "mlp512, dropout 0.5, wd 0.05": ["model.head_kwargs={hidden: [512], dropout: 0.5}",
                                     "train.weight_decay=0.05"],
    "mlp1024, dropout 0.5": ["model.head_kwargs={hidden: [1024], dropout: 0.5}"],
    "linear": ["model.head_kwargs={hidden: [], dropout: 0.0}"],
    "mlp256, wd 0.05": ["train.weight_decay=0.05"],
    "mlp256, lr 3e-4": ["train.lr=0.0003"],
}
BASE = ["split.ratios=[0.6,0.2,0.2]", "method.name=monotonic",
        "model.head_kwargs={hidden: [256], dropout: 0.2}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/native.yaml")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--out", default="runs/sweep-native-head")
    args = ap.parse_args()
    seeds = [f"split.seeds={list(range(args.seeds))}"]
    prep = splits = None
    rows = {}
    print("| variant | median val SRCC | CLIVE test | BIQ2021 test | seconds |\n"
          "|---|---|---|---|---|")
    for name, sets in VARIANTS.items():
        cfg = load_config(args.config, BASE + seeds + sets)
        if prep is None:
            prep = prepare(cfg, "cpu", log=lambda *a: None)
            splits = build_splits(cfg, prep.manifest)
        t = time.perf_counter()
        res = run_splits(cfg, prep, splits, Path(args.out) / name.replace(" ", "_"), False,
                         "cpu", log=lambda *a: None)
        val = float(np.median([r["val_srcc"] for r in res]))
        test = {d: float(np.median([r["test"][d]["srcc"] for r in res])) for d in res[0]["test"]}
        rows[name] = {"val": val, **test, "seconds": time.perf_counter() - t}
        print(f"| {name} | {val:.3f} | {test['clive']:.3f} | {test['biq2021']:.3f} | "
              f"{rows[name]['seconds']:.0f} |", flush=True)
    best = max(rows, key=lambda n: rows[n]["val"])
    print(f"\nbest on validation: {best}; seeds {list(range(args.seeds))}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "sweep.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
