"""Scoring throughput: the streaming pipeline vs. forward-only vs. a naive loop, one run.

    uv run python benchmarks/bench_scoring.py --model runs/quick --images ../shared/data/CLIVE

Forward-only runs the model on batches decoded beforehand (the ceiling); the pipeline
decodes in worker processes while the model runs; the naive loop opens, resizes and scores
one image at a time. The figure is pipeline / forward-only (goal >= 0.9).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from datetime import date
from pathlib import Path

import torch

from mixiqa.data.transforms import CPU_BATCH_PIXELS, same_shape_groups
from mixiqa.errors import run_command
from mixiqa.models.iqa import load_model
from mixiqa.score import expand_inputs, iter_scores, model_transform


def forward_only(model, paths, batch_size: int) -> float:
    """The model alone on the pipeline's forward passes: the same uint8 pixels, decoded
    beforehand, cut into the same passes (CPU_BATCH_PIXELS) and normalised per pass as the
    pipeline does; only decoding is left out."""
    tf = model_transform(model)
    passes = []
    for i in range(0, len(paths), batch_size):
        xs = [tf.pixels(p) for p in paths[i:i + batch_size]]             # uint8 (3, H, W)
        passes += [torch.stack([xs[j] for j in g])
                   for g in same_shape_groups(xs, CPU_BATCH_PIXELS)]
    with torch.inference_mode():
        model(tf.normalize(passes[0][:1]).contiguous(memory_format=torch.channels_last))
        t = time.perf_counter()
        for x in passes:
            model(tf.normalize(x).contiguous(memory_format=torch.channels_last))
        return len(paths) / (time.perf_counter() - t)


def pipeline(model, paths, batch_size: int, workers: int, decode: str) -> float:
    t = time.perf_counter()
    n = sum(1 for r in iter_scores(model, paths, batch_size, workers, show_progress=False,
                                   decode=decode) if r.score is not None)
    assert n == len(paths)
    return len(paths) / (time.perf_counter() - t)


def naive(model, paths) -> float:
    tf = model_transform(model)
    t = time.perf_counter()
    with torch.inference_mode():
        for p in paths:
            model(tf(p)[None])
    return len(paths) / (time.perf_counter() - t)


def scoring_memory(model: str | None, folder: str, batch_size: int, workers: int) -> dict:
    """Peak RSS of `mixiqa score FOLDER` run as a child process (streaming: it should not
    grow with the number of images)."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "mixiqa", "score", folder, "-o", f"{tmp}/s.csv",
               "--batch-size", str(batch_size), "--workers", str(workers)]
        cmd += ["--model", model] if model else []
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        seconds = time.perf_counter() - t
        with open(f"{tmp}/s.csv") as f:
            n = sum(1 for _ in f) - 1
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"memory_images": n, "memory_peak_rss_mib": round(peak),
            "memory_seconds": round(seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped one)")
    ap.add_argument("--images", required=True)
    ap.add_argument("--limit", type=int, default=320)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", help="append the result as a JSON line to this file")
    ap.add_argument("--memory-folder", help="also score this whole folder with `mixiqa score` "
                    "in a child process and report its peak memory")
    args = ap.parse_args()
    paths = expand_inputs([args.images])[: args.limit]
    model = load_model(args.model).eval()
    model.backbone.to(memory_format=torch.channels_last)
    fwd = forward_only(model, paths, args.batch_size)
    pipe = pipeline(model, paths, args.batch_size, args.workers, decode="processes")
    threads = pipeline(model, paths, args.batch_size, args.workers, decode="threads")
    fwd = max(fwd, forward_only(model, paths, args.batch_size))  # best of two: the ceiling
    slow = naive(model, paths[: max(32, args.limit // 4)])
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads"
    res = {"date": str(date.today()), "machine": machine,
           "torch": torch.__version__, "images": len(paths), "batch_size": args.batch_size,
           "workers": args.workers, "forward_only_img_s": round(fwd, 2),
           "pipeline_img_s": round(pipe, 2), "pipeline_threads_img_s": round(threads, 2),
           "naive_img_s": round(slow, 2), "pipeline_over_forward": round(pipe / fwd, 3),
           "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    if args.memory_folder:
        res.update(scoring_memory(args.model, args.memory_folder, args.batch_size, args.workers))
    print(json.dumps(res, indent=1))
    if args.out:
        with open(args.out, "a") as f:
            f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
