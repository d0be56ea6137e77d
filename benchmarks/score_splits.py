"""Score a finished ``mixiqa train`` run's test images through ``mixiqa.load_model``, as
``mixiqa score`` does, and compare with the SRCC the run reported.

    uv run python benchmarks/score_splits.py runs/nt-bf16-e20              # CLIVE, ten seeds
    uv run python benchmarks/score_splits.py runs/nt-bf16-e20 --seeds 0 --dataset biq2021
    uv run python benchmarks/score_splits.py runs/nt-bf16-e20 --with runs/nt2-ld0.3-bf16-e20

Two questions, one pass over each split's test images:

- ``cached`` vs ``full``: a model trained on cached rows (``model.train_tail``) is saved as a
  whole backbone and scores decoded images end to end. Its test SRCC should equal the one
  the run computed from the cache (``q`` of ``split_*/predictions.csv``), so that the
  benchmark numbers hold for ``mixiqa score``.
- ``flip`` and ``avg``: the same images mirrored left-right, and the mean of the two
  predictions (test-time flip averaging; fixed beforehand, nothing tuned on test rows).

With ``--with RUN2`` each split's model is the ensemble (``mixiqa.models.ensemble``) of the
two runs' models of that split, scored on the dataset's own scale, as the shipped default
model is; ``cached`` is then the mean of the two runs' ``pred`` columns (what
``benchmarks/average_runs.py`` reads), so the two columns check the ensemble code against
the averaged predictions. ``--no-flip`` skips the mirrored pass.

Each split's model sees only the test rows of its own split. Prints per-seed SRCC and the
medians. One thread: ~4 s an image pair (CLIVE, 500 x 500) at low priority beside a training
run on the 2-core CPU of benchmarks/real.md, ~8 min a CLIVE split.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from scipy.stats import spearmanr

import mixiqa
from mixiqa.errors import DataError, run_command
from mixiqa.models.ensemble import EnsembleModel
from mixiqa.report.run import finished_seeds, finished_splits, read_rows
from mixiqa.score import model_transform


def test_rows(split: Path, dataset: str) -> list[dict]:
    rows = [r for r in read_rows(split / "predictions.csv") if r["dataset"] == dataset]
    if not rows:
        raise DataError(f"{split / 'predictions.csv'} has no test rows of '{dataset}'.")
    return rows


def split_scores(split: Path, dataset: str, partner: Path | None = None,
                 flips: bool = True) -> dict[str, float]:
    """One split's test SRCC: the run's cached q (with a partner: the two runs' averaged
    predictions), the whole model as-is, mirrored, and both."""
    rows = test_rows(split, dataset)
    model = mixiqa.load_model(split / "model").eval()
    cached = [float(r["q"]) for r in rows]
    if partner is not None:
        other = {r["name"]: float(r["pred"]) for r in test_rows(partner, dataset)}
        if set(other) != {r["name"] for r in rows}:
            raise DataError(f"{split} and {partner} test different {dataset} images.")
        cached = [float(r["pred"]) + other[r["name"]] for r in rows]
        model = EnsembleModel([model, mixiqa.load_model(partner / "model")],
                              {"reference": dataset}).eval()
    tf = model_transform(model)
    full, flip = [], []
    with torch.inference_mode():
        for r in rows:
            x = tf.normalize(tf.pixels(r["path"])[None])               # (1, 3, H, W)
            x = x.contiguous(memory_format=torch.channels_last)
            full.append(float(model(x)))
            flip.append(float(model(x.flip(-1))) if flips else float("nan"))
    mos = [float(r["score"]) for r in rows]

    def rho(pred):
        return float(spearmanr(pred, mos)[0])

    return {"n": len(rows), "cached": rho(cached), "full": rho(full),
            "flip": rho(flip) if flips else float("nan"),
            "avg": rho([a + b for a, b in zip(full, flip)]) if flips else float("nan")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a finished `mixiqa train` run folder")
    ap.add_argument("--dataset", default="clive")
    ap.add_argument("--seeds", type=int, nargs="*", help="split seeds (default: all finished)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--with", dest="partner", type=Path,
                    help="a second run with the same splits: score each split's ensemble")
    ap.add_argument("--no-flip", dest="flips", action="store_false",
                    help="skip the mirrored pass (half the time)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    splits = finished_splits(a.run)
    partners = finished_splits(a.partner) if a.partner else {}
    keys = ("cached", "full") + (("flip", "avg") if a.flips else ())
    res = []
    for seed in a.seeds or finished_seeds(a.run):
        if seed not in splits or not (splits[seed] / "model").is_dir():
            raise DataError(f"{a.run} has no finished split with seed {seed} and a saved "
                            f"model (finished seeds: {sorted(splits) or 'none'}).")
        if a.partner and seed not in partners:
            raise DataError(f"{a.partner} has no finished split with seed {seed}.")
        r = split_scores(splits[seed], a.dataset, partners.get(seed), a.flips)
        res.append(r)
        print(f"seed {seed} n={r['n']} " + " ".join(f"{k} {r[k]:.3f}" for k in keys),
              flush=True)
    for k in keys:
        print(f"{k:6s} median SRCC {statistics.median(r[k] for r in res):.3f}")
    if not a.flips:
        return
    d = [r["avg"] - r["full"] for r in res]
    print(f"avg - full: paired median {statistics.median(d):+.4f}, "
          f"higher on {sum(x > 0 for x in d)} of {len(d)}")


if __name__ == "__main__":
    sys.exit(run_command(main, Path(__file__).name))
