"""Run several ``mixiqa train`` commands at once on one machine, stop them at a deadline, and
pack what they finished: how the GPU results of benchmarks/real.md were made in one call of
a lent machine (a call has a time limit, and a small network like Lite0 leaves a big GPU
idle when it trains alone).

    python benchmarks/run_parallel.py --deadline 480 --pack out/runs.tar.gz \\
        --job "configs/native_finetune.yaml --out runs/ft-split80" \\
        --job "configs/native_finetune.yaml --out runs/ft-split60 --set split.ratios=[0.6,0.2,0.2]"

Each ``--job`` is the argument list of one ``mixiqa train`` (quoted as one string). At the
deadline every job still running is interrupted; its finished splits keep their
``result.json`` and the run can go on later with ``mixiqa train ... --resume``. The summary
printed at the end (and written beside the pack as ``summary.json``) gives, per job, the
finished seeds and the median test SRCC per dataset. ``--pack`` stores each run's small
files (results, predictions, split lists, logs), never model weights or checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

SMALL = ("result.json", "results.json", "predictions.csv", "split.json", "config.yaml",
         "train.log")


def out_of(args: list[str]) -> Path:
    if "--out" not in args:
        raise SystemExit(f"job {shlex.join(args)!r} names no --out folder")
    return Path(args[args.index("--out") + 1])


def gpu_line() -> str:
    """Utilisation and memory of the GPUs now ('' without nvidia-smi)."""
    try:
        return subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              timeout=10).stdout.strip().replace("\n", "; ")
    except (OSError, subprocess.SubprocessError):
        return ""


TRAIN = (sys.executable, "-m", "mixiqa", "train")


def run_jobs(jobs: list[list[str]], deadline: float, poll: float = 15.0,
             program: tuple = TRAIN) -> dict[int, tuple[float, str]]:
    """Start ``program + job`` for every job, wait until all end or the deadline (then
    interrupt the rest); returns job -> (seconds it ran, how it ended: ``rc 0``, ``rc N``
    for a failure, whose log is its ``train.log``, or ``stopped at the deadline``)."""
    start = time.monotonic()
    procs = []
    for i, args in enumerate(jobs):
        out = out_of(args)
        out.mkdir(parents=True, exist_ok=True)
        log = open(out / "train.log", "w")
        cmd = [*program, *args]
        print(f"[{i}] {shlex.join(cmd)}", flush=True)
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, "MIXIQA_QUIET": "1"}), log))
    ended = {}
    while len(ended) < len(procs) and time.monotonic() - start < deadline:
        time.sleep(min(poll, max(0.0, deadline - (time.monotonic() - start))))
        for i, (p, _) in enumerate(procs):
            if i not in ended and p.poll() is not None:
                ended[i] = (time.monotonic() - start, f"rc {p.returncode}")
                print(f"[{i}] ended rc {p.returncode} after {ended[i][0]:.0f} s", flush=True)
        print(f"{time.monotonic() - start:5.0f} s  gpu {gpu_line()}", flush=True)
    for i, (p, log) in enumerate(procs):
        if p.poll() is None:   # SIGINT: the split in flight stops; finished ones are kept
            p.send_signal(signal.SIGINT)
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
            ended[i] = (time.monotonic() - start, "stopped at the deadline")
            print(f"[{i}] stopped at the deadline after {ended[i][0]:.0f} s", flush=True)
        log.close()
    return ended


def summarize(out: Path) -> dict:
    """Finished seeds of a run and the median test SRCC / PLCC per dataset and val SRCC."""
    results = [json.loads(p.read_text()) for p in sorted(out.glob("split_*/result.json"))]
    per: dict[str, dict[str, list]] = {}
    for r in results:
        for name, m in r["test"].items():
            d = per.setdefault(name, {"srcc": [], "plcc": []})
            d["srcc"].append(m["srcc"])
            d["plcc"].append(m.get("plcc"))
    vals = [r["val_srcc"] for r in results if r.get("val_srcc") is not None]
    return {"seeds": [r["seed"] for r in results],
            "median": {n: {k: statistics.median(v) for k, v in d.items() if None not in v}
                       for n, d in per.items()},
            "per_seed_srcc": {n: d["srcc"] for n, d in per.items()},
            "median_val_srcc": statistics.median(vals) if vals else None}


def pack(outs: list[Path], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for out in outs:
            for f in sorted(out.rglob("*")):
                if f.is_file() and f.name in SMALL:
                    tar.add(f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--job", action="append", required=True,
                    help="the arguments of one `mixiqa train`, as one quoted string")
    ap.add_argument("--deadline", type=float, default=540.0,
                    help="seconds after which running jobs are stopped")
    ap.add_argument("--pack", type=Path, help="a .tar.gz of the runs' small files")
    args = ap.parse_args(argv)
    jobs = [shlex.split(j) for j in args.job]
    ended = run_jobs(jobs, args.deadline)
    summary = {}
    for i, job in enumerate(jobs):
        out = out_of(job)
        seconds, how = ended[i]
        summary[shlex.join(job)] = {**summarize(out), "seconds": round(seconds), "ended": how}
        print(json.dumps({shlex.join(job): summary[shlex.join(job)]}, indent=1), flush=True)
    if args.pack:
        pack([out_of(j) for j in jobs], args.pack)
        (args.pack.parent / "summary.json").write_text(json.dumps(summary, indent=1))
    failed = [j for j, v in summary.items() if v["ended"] not in ("rc 0", "stopped at the "
                                                                   "deadline")]
    for j in failed:
        print(f"FAILED: {j} ({summary[j]['ended']}; see its train.log)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
