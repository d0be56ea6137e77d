r"""Re-IQA on the shared data: content vs quality vs both features, on the same splits.

    uv run python benchmarks/bench_reiqa.py --data ../shared/data \
        --pretrain-run runs/reiqa-pretrain --out runs/reiqa-bench

1. If ``PRETRAIN_RUN/encoder.safetensors`` is missing, pretrain it first with
   ``configs/reiqa_pretrain.yaml`` on every image under ``--data`` (no scores are read),
   resuming a checkpoint left in ``PRETRAIN_RUN`` by an interrupted run.
2. CLIVE + BIQ2021 mixed, ``--splits`` seeds: CLIVE random 60/20/20, BIQ2021 its official
   train/test with 20 % of train as validation. Each variant (reiqa-content, -quality,
   -both) fits its ridge on the SAME splits; alpha is chosen on validation SRCC.
3. Prints a markdown table of medians over splits (and the seeds), and writes
   ``OUT/reiqa_bench.json`` plus one run folder per variant.

Features are cached (``$MIXIQA_CACHE``), so a second run only refits the ridges.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from mixiqa.config import config_from_dict
from mixiqa.errors import run_command
from mixiqa.experiment import build_splits, prepare, resolve_device, summarize
from mixiqa.pretrain import ENCODER_FILE, CHECKPOINT_FILE, pretrain
from mixiqa.pretrain.config import load_pretrain_config
from mixiqa.reiqa import VARIANTS, run_reiqa

NAMES = {"clive": "CLIVE", "biq2021": "BIQ2021"}


def ensure_encoder(args) -> tuple[Path, float]:
    """The encoder file, pretraining it first when missing; seconds spent pretraining."""
    run = Path(args.pretrain_run)
    if (run / ENCODER_FILE).exists():
        return run / ENCODER_FILE, 0.0
    cfg = load_pretrain_config(args.pretrain_config, args.set)
    t = time.perf_counter()
    pretrain(cfg, args.data, run, resume=(run / CHECKPOINT_FILE).exists())
    return run / ENCODER_FILE, time.perf_counter() - t


def experiment(args, encoder: Path, variant: str):
    data = Path(args.data)
    return config_from_dict({
        "name": f"bench-{variant}",
        "datasets": [{"name": "clive", "root": str(data / "CLIVE"), "allow_missing": True},
                     {"name": "biq2021", "root": str(data / "BIQ2021"), "allow_missing": True}],
        "split": {"protocol": "official", "ratios": [0.6, 0.2, 0.2],
                  "seeds": list(range(args.splits))},
        # freeze False: prepare() then only loads rows and the backbone; Re-IQA extracts
        # its own features (average pooling, both encoders)
        "model": {"backbone": "efficientnet_lite0", "weights": "offline", "freeze": False,
                  "scales": [1.0, 0.5], "feature_short": None, "feature_crop": args.crop},
        "method": {"name": variant, "mapper_kwargs": {"encoder": str(encoder)}},
        "train": {"workers": args.workers}})


def row(variant: str, summary: dict, results: list[dict], seconds: float) -> list[str]:
    per, w = summary["per_dataset"], summary["weighted"] or {}
    cells = [variant]
    for name in NAMES:
        m = per.get(name, {})
        cells += [f"{m.get('srcc', float('nan')):.3f}", f"{m.get('plcc', float('nan')):.3f}"]
    alphas = [float(r["selected"].split("=")[1].split()[0]) for r in results]
    weighted = w.get("srcc", float("nan"))
    return cells + [f"{weighted:.3f}", f"{np.median(alphas):g}", f"{seconds:.0f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data", help="folder holding CLIVE/ and BIQ2021/")
    ap.add_argument("--pretrain-config", default="configs/reiqa_pretrain.yaml")
    ap.add_argument("--pretrain-run", default="runs/reiqa-pretrain")
    ap.add_argument("--set", action="append", default=[], help="pretrain config override")
    ap.add_argument("--out", default="runs/reiqa-bench")
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--crop", type=int, default=384, help="centre crop for the features")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    encoder, t_pretrain = ensure_encoder(args)
    out, quiet = Path(args.out), (lambda *a: None)
    header = ["variant", "CLIVE SRCC", "CLIVE PLCC", "BIQ2021 SRCC", "BIQ2021 PLCC",
              "weighted SRCC", "median alpha", "seconds (features + ridges)"]
    rows, report, prep, splits = [], {}, None, None
    for variant in args.variants.split(","):
        cfg = experiment(args, encoder, variant)
        device = resolve_device(cfg.train.device)
        if prep is None:  # rows and splits are shared by every variant
            prep = prepare(cfg, device, log=quiet)
            splits = build_splits(cfg, prep.manifest)
        t = time.perf_counter()
        results = run_reiqa(cfg, prep, splits, out / variant, resume=False, device=device)
        seconds = time.perf_counter() - t
        summary = summarize(results)
        summary.update({"config": cfg.to_dict(), "seeds": [r["seed"] for r in results],
                        "seconds": seconds})
        (out / variant / "results.json").write_text(json.dumps(summary, indent=1, default=str))
        rows.append(row(variant, summary, results, seconds))
        report[variant] = {n: summary["per_dataset"][n]["srcc"] for n in summary["per_dataset"]}
        print(" | ".join(rows[-1]), flush=True)
    print_table(header, rows, report, splits, encoder, t_pretrain)
    (out / "reiqa_bench.json").write_text(json.dumps({
        "srcc_medians": report, "seeds": [s.seed for s in splits], "encoder": str(encoder),
        "pretrain_seconds": round(t_pretrain), "crop": args.crop}, indent=1))


def print_table(header, rows, report, splits, encoder, t_pretrain) -> None:
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if "reiqa-content" in report:
        for v in ("reiqa-quality", "reiqa-both"):
            if v in report:
                gain = ", ".join(f"{label} {report[v][n] - report['reiqa-content'][n]:+.3f}"
                                 for n, label in NAMES.items() if n in report[v])
                print(f"\n{v} minus reiqa-content (median SRCC): {gain}")
    print(f"\n{len(splits)} splits, seeds {[s.seed for s in splits]}; encoder {encoder}"
          + (f" (pretrained here in {t_pretrain:.0f} s)" if t_pretrain else ""))


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
