"""``mixiqa score`` (images -> one score each), ``merge-scores``, ``translate`` and
``ensemble`` (trained models -> one model that averages them)."""

from __future__ import annotations

import json
import os
import sys

from mixiqa.cli.common import device_of
from mixiqa.errors import ConfigError


def add_score_commands(sub) -> None:
    s = sub.add_parser("score", help="score image files, folders or globs",
                       description="One score per image (higher is better). A file that "
                                   "cannot be decoded is reported and skipped.")
    s.add_argument("paths", nargs="+", help="image files, folders or glob patterns")
    s.add_argument("--model", help="run or model folder (default: the model shipped with mixiqa)")
    s.add_argument("--method", choices=["model", "niqe", "brisque"], default="model",
                   help="a trained mixiqa model (default), or the classical NIQE / BRISQUE "
                        "(LIVE model; lower is better)")
    s.add_argument("--scale", metavar="DATASET",
                   help="report on a training dataset's own scale (e.g. clive), or 'q' for "
                        "the raw proxy (an ensemble's: its members' mean on its reference "
                        "dataset's scale, unclipped); default: the model's own output scale "
                        "(the shipped model: 0-100 on CLIVE's MOS scale), else q")
    s.add_argument("--format", choices=["csv", "json"], default="csv")
    s.add_argument("--output", "-o", help="write to this file instead of standard output")
    s.add_argument("--batch-size", type=int, default=16)
    s.add_argument("--workers", type=int, default=2, help="decoding processes (0: decode inline)")
    s.add_argument("--device", default="auto")
    s.add_argument("--shard", metavar="K/N",
                   help="score only shard K of N (an independent job per shard; join the "
                        "part files with `mixiqa merge-scores`). Under torchrun, ranks shard "
                        "and merge automatically.")
    s.set_defaults(func=cmd_score)

    m = sub.add_parser("merge-scores", help="join the part files of `score --shard K/N` runs",
                       description="Checks that every input image is in exactly one part.")
    m.add_argument("parts", nargs="+", help="the part files, in any order")
    m.add_argument("--inputs", nargs="+", required=True,
                   help="the same image files/folders/globs the shards were given")
    m.add_argument("--format", choices=["csv", "json"], default="csv")
    m.add_argument("--output", "-o", help="write to this file instead of standard output")
    m.set_defaults(func=cmd_merge_scores)

    t = sub.add_parser("translate", help="translate scores between datasets' scales",
                       description="MOS_to = g_to(g_from^-1(MOS_from)) through the model's "
                                   "invertible mappers; prints one score per line.")
    t.add_argument("scores", nargs="+", type=float)
    t.add_argument("--model", help="run or model folder (default: the shipped model)")
    t.add_argument("--from", dest="src", required=True, help="dataset whose scale SCORES are on")
    t.add_argument("--to", dest="dst", required=True, help="dataset scale to translate to")
    t.set_defaults(func=cmd_translate)

    e = sub.add_parser("ensemble", help="average trained models into one model folder",
                       description="One model whose score is the mean of the members' scores "
                                   "on a dataset's scale (see mixiqa.models.ensemble); "
                                   "`mixiqa score --model OUT` and load_model(OUT) use it.")
    e.add_argument("runs", nargs="+", help="two or more run or model folders, trained on the "
                                           "same datasets with the same input recipe")
    e.add_argument("--out", "-o", required=True, help="a new folder for the ensemble")
    e.add_argument("--reference", metavar="DATASET",
                   help="dataset whose scale the ensemble's q is on (default: the first "
                        "member's first dataset)")
    e.add_argument("--output-scale", metavar="DATASET",
                   help="the scale `mixiqa score` reports by default (default: q)")
    e.add_argument("--clip", nargs=2, type=float, metavar=("LO", "HI"),
                   help="clip the default output to this range (with --output-scale)")
    e.set_defaults(func=cmd_ensemble)


def cmd_score(args) -> int:
    """Score images; under torchrun (or with --shard K/N) each process takes a stride of the
    sorted inputs and the parts are merged in input order (see mixiqa.score)."""
    from mixiqa import distributed
    from mixiqa.models.iqa import load_model
    from mixiqa.score import expand_inputs, iter_scores, merge_parts, parse_shard, write_part

    paths = expand_inputs(args.paths)
    if args.method != "model":
        return score_classical(args, paths)
    model = load_model(args.model)
    if args.scale and args.scale != "q":
        model.check_dataset(args.scale)  # unknown dataset -> clear error before any work
    device = device_of(args)       # under torchrun this joins the process group
    k, n = parse_shard(args.shard) if args.shard else (distributed.rank(), distributed.world_size())
    if n > 1 and not args.output:
        raise ConfigError("Sharded scoring needs --output: each shard writes a part file.")
    results = iter_scores(model, distributed.shard(paths, k, n), args.batch_size, args.workers,
                          args.scale, device, show_progress=k == 0)
    if n == 1:
        return write_scores(list_failures(results), paths, args.output, args.format)
    if args.shard:  # an independent job: its part file is the output; `--merge` joins them
        ok, failed = write_part(results, args.output)
        print(f"mixiqa: shard {k}/{n}: {ok} scored, {failed} failed -> {args.output}",
              file=sys.stderr)
        return 0
    part = f"{args.output}.part{k:03d}-of-{n:03d}.csv"
    write_part(results, part)
    distributed.barrier()
    if not distributed.is_main():
        return 0
    parts = [f"{args.output}.part{r:03d}-of-{n:03d}.csv" for r in range(n)]
    code = write_scores(list_failures(merge_parts(parts, paths)), paths, args.output, args.format)
    for p in parts:
        os.remove(p)
    return code


def score_classical(args, paths: list[str]) -> int:
    """NIQE or BRISQUE (LIVE model) per image; lower is better, as the papers report."""
    from mixiqa.classical.runner import score_paths
    from mixiqa.score import ScoreResult

    if args.model or args.scale or args.shard:
        raise ConfigError(f"--method {args.method} scores with its own fixed model: drop "
                          "--model, --scale and --shard.")
    values = score_paths(paths, args.method, workers=args.workers)
    results = [ScoreResult(p, None if v != v else float(v), None if v == v else
                           f"{args.method} could not be computed (unreadable, too small or "
                           "uniform image; see the warning above)")
               for p, v in zip(paths, values)]
    return write_scores(list_failures(results), paths, args.output, args.format)


def cmd_merge_scores(args) -> int:
    """Join the part files of `mixiqa score --shard K/N` runs, checking the coverage."""
    from mixiqa.score import expand_inputs, merge_parts

    results = merge_parts(args.parts, expand_inputs(args.inputs))
    return write_scores(list_failures(results), None, args.output, args.format)


def list_failures(results):
    """Pass results through, reporting each image that could not be scored."""
    for r in results:
        if r.score is None:
            print(f"mixiqa: skipped {r.path}: {r.error}", file=sys.stderr)
        yield r


def write_scores(results, paths, output: str | None, fmt: str) -> int:
    """Write (path, score) rows as CSV or JSON, streaming; exit 1 only if nothing scored."""
    import csv as _csv

    out = open(output, "w", newline="") if output else sys.stdout
    total = failed = 0
    try:
        writer = _csv.writer(out) if fmt == "csv" else None
        if writer:
            writer.writerow(["path", "score"])
        records = []
        for r in results:
            total += 1
            if r.score is None:
                failed += 1
            elif writer:
                writer.writerow([r.path, f"{r.score:.6g}"])
            else:
                records.append({"path": r.path, "score": r.score})
        if not writer:
            json.dump(records, out, indent=1)
            out.write("\n")
    finally:
        if output:
            out.close()
    if failed:
        print(f"mixiqa: {failed} of {total} images could not be scored", file=sys.stderr)
    return 0 if failed < total else 1


def cmd_translate(args) -> int:
    import torch

    from mixiqa.models.iqa import load_model

    model = load_model(args.model, with_backbone=False)
    out = model.translate(torch.tensor(args.scores, dtype=torch.float32), args.src, args.dst)
    for v in out.tolist():
        print(f"{v:.6g}")
    return 0


def cmd_ensemble(args) -> int:
    from pathlib import Path

    from mixiqa.models.ensemble import make_ensemble

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out '{out}' is not empty: give a new folder for the ensemble.")
    if args.clip and not args.output_scale:
        raise ConfigError("--clip applies to the default output: give --output-scale too.")
    output = ({"scale": args.output_scale, "clip": args.clip} if args.output_scale else None)
    make_ensemble(args.runs, out, reference=args.reference or args.output_scale, output=output)
    print(f"mixiqa: ensemble of {len(args.runs)} models -> {out}", file=sys.stderr)
    return 0
