"""Ten splits x every mapper family on cached features, timed: the fast-protocol figure.

    uv run python benchmarks/bench_protocol.py configs/quickstart.yaml --splits 10 \
        --out runs/protocol

Features are fetched once (from the cache after the first run); every method then trains
on the SAME splits. Reports wall time of the protocol and the median test SRCC per method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mixiqa.config import load_config
from mixiqa.errors import run_command
from mixiqa.experiment import build_splits, prepare, resolve_device, run_splits, summarize
from mixiqa.methods import METHODS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--methods", default=",".join(METHODS.names()))
    ap.add_argument("--set", action="append", default=[], help="config override")
    ap.add_argument("--method-set", action="append", default=[], metavar="METHOD:KEY=VALUE",
                    help="an override for one method only, e.g. a smaller MIMI mapper")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    cfg = load_config(args.config, [f"split.seeds={list(range(args.splits))}", *args.set])
    device = resolve_device(cfg.train.device)
    t0 = time.perf_counter()
    prep = prepare(cfg, device, log=lambda *a: None)
    t_prep = time.perf_counter() - t0
    splits = build_splits(cfg, prep.manifest)
    table, t1 = {}, time.perf_counter()
    per_method: dict[str, list[str]] = {}
    for item in args.method_set:
        name, _, override = item.partition(":")
        per_method.setdefault(name, []).append(override)
    for name in args.methods.split(","):
        c = load_config(args.config, [f"split.seeds={list(range(args.splits))}", *args.set,
                                      f"method.name={name}", *per_method.get(name, [])])
        t = time.perf_counter()
        res = run_splits(c, prep, splits, Path(args.out) / name, False, device,
                         log=lambda *a: None)
        s = summarize(res)
        table[name] = {"seconds": round(time.perf_counter() - t, 1),
                       **{d: round(m["srcc"], 3) for d, m in s["per_dataset"].items()}}
        print(name, json.dumps(table[name]), flush=True)
    out = {"protocol_seconds": round(time.perf_counter() - t1, 1),
           "overrides": args.set, "method_overrides": per_method,
           "prepare_seconds": round(t_prep, 1), "features": prep.timings.get("features"),
           "n_splits": len(splits), "seeds": list(cfg.split.seeds), "methods": table}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "protocol.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "methods"}, indent=1))


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
