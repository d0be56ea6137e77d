"""``mixiqa demo``: the main job end to end, on data that needs no download.

Without ``--data`` it builds a small mixed-dataset problem from the photos that ship with
scikit-image (distorted at several levels; every image's latent quality is a full-reference
index; two synthetic datasets rate partly overlapping parts of that range on their own
scales and directions), trains naive mixing, linear rescaling, the MonotonicIQA mapper and
SIND on the same content splits, and prints per-dataset and pooled alignment SRCC. With
``--data ../shared/data`` it runs the real CLIVE + BIQ2021 comparison instead. Either way
it writes the HTML report with plots.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mixiqa.errors import ConfigError

DEMO_METHODS = ["naive", "linear", "monotonic", "sind"]
DEMO_TRAIN = ["train.epochs=30", "train.batch_size=32", "train.threads=1",
              "model.feature_crop=160", "model.feature_short=160",
              "model.head_kwargs={hidden: [], dropout: 0.0}"]


def add_demo_command(sub) -> None:
    p = sub.add_parser("demo", help="the mixed-dataset job on embedded data, with a report",
                       description=__doc__.split("\n\n")[1])
    p.add_argument("--data", help="a folder holding CLIVE/ and BIQ2021/ (e.g. ../shared/data): "
                                  "run the real comparison instead of the synthetic one")
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--splits", type=int, default=4, help="content splits (seeds 0..N-1)")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    out = Path(args.out)
    if args.data:
        table = real_demo(Path(args.data), out, args.splits)
    else:
        table = synthetic_demo(out, args.splits)
    from mixiqa.report import write_report

    html = write_report(out / "results", out / "report")
    print(table)
    print(f"\nreport: {html}   ({time.perf_counter() - t0:.0f} s)")
    return 0


def synthetic_demo(out: Path, n_splits: int) -> str:
    """Build the embedded synthetic problem (once) and compare the methods on it."""
    from mixiqa.synth import (build_synth, default_spec, markdown_table, run_synth_benchmark,
                              skimage_sources)

    # scikit-image ships 8 colour photos: two datasets of 4 sources each is the most that
    # the 60/20/20 content split allows
    spec = default_spec(2, seed=0, size=160)
    print(f"building 2 synthetic datasets from scikit-image's photos in {out / 'data'} ...")
    build_synth(skimage_sources(), out / "data", spec)
    doc = run_synth_benchmark(out / "data", DEMO_METHODS, n_splits, out / "results",
                              DEMO_TRAIN, resume=True)
    return markdown_table(doc)


def real_demo(data: Path, out: Path, n_splits: int) -> str:
    """CLIVE + BIQ2021 from ``data``: every method on the same splits (a small bench)."""
    import yaml

    from mixiqa.bench import run_bench
    from mixiqa.bench.load import load_bench_config
    from mixiqa.config import quickstart_recipe

    for sub in ("CLIVE", "BIQ2021"):
        if not (data / sub).is_dir():
            raise ConfigError(f"--data '{data}' has no {sub}/ folder; point it at the folder "
                              "that holds CLIVE/ and BIQ2021/ (e.g. ../shared/data).")
    out.mkdir(parents=True, exist_ok=True)
    base = {"name": "quickstart", **quickstart_recipe()}
    base["datasets"] = [{"name": "clive", "root": str((data / "CLIVE").absolute()),
                         "allow_missing": True},
                        {"name": "biq2021", "root": str((data / "BIQ2021").absolute()),
                         "allow_missing": True}]
    bench = {"name": "demo", "experiment": base,
             "methods": [{"label": m, "set": {"method.name": m}} for m in DEMO_METHODS],
             "datasets": [["clive", "biq2021"]],
             "protocols": [{"name": "official", "protocol": "official",
                            "ratios": [0.7, 0.1, 0.2], "seeds": n_splits}],
             "set": {"train.epochs": 20, "train.threads": 1}}
    path = out / "demo_bench.yaml"
    path.write_text(yaml.safe_dump(bench, sort_keys=False))
    run_bench(load_bench_config(path), out / "results", resume=True)
    return (out / "results" / "table.md").read_text()

