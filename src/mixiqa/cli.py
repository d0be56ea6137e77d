"""The ``mixiqa`` command: thin wrappers that parse arguments, call the library, print.

Each subcommand lives in a ``cmd_*`` function registered in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from mixiqa import __version__
from mixiqa.config import parse_key_value
from mixiqa.errors import ConfigError, MixiqaError, run_command

EPILOG = """examples:
  mixiqa train configs/quickstart.yaml --out runs/quick    train (CLIVE + BIQ2021, CPU, minutes)
  mixiqa eval runs/quick --data clive=../shared/data/CLIVE --allow-missing
  mixiqa score photos/ --model runs/quick --format csv     one score per image
  mixiqa translate --model runs/quick --from clive --to biq2021 55 70
  mixiqa datasets                                   list every known dataset and its facts
  mixiqa datasets inspect clive --root DATA/CLIVE   count listed / present / missing images
  mixiqa splits biq2021 --root DATA/BIQ2021 --protocol official --allow-missing --out splits/
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mixiqa", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Blind image quality assessment learned from mixed datasets whose "
                    "scores live on different scales.")
    parser.add_argument("--version", action="version", version=f"mixiqa {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_datasets_commands(sub)
    add_splits_command(sub)
    add_train_commands(sub)
    from mixiqa.bench import add_bench_command
    from mixiqa.pretrain import add_pretrain_command
    from mixiqa.report import add_report_command

    add_bench_command(sub)
    add_report_command(sub)
    add_pretrain_command(sub)
    from mixiqa.demo import add_demo_command
    from mixiqa.synth import add_synth_command

    add_synth_command(sub)
    add_demo_command(sub)
    return parser


# ---- datasets -----------------------------------------------------------------------

def add_datasets_commands(sub) -> None:
    p = sub.add_parser("datasets", help="list known datasets, or inspect a release folder",
                       description="Without a subcommand: list every dataset mixiqa can read.")
    p.add_argument("--format", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_datasets_list)
    dsub = p.add_subparsers(dest="datasets_command", metavar="SUBCOMMAND")
    i = dsub.add_parser("inspect", help="parse a release folder and report what is there",
                        description="Parse a dataset's official release and report images "
                                    "listed, present and missing, score range, direction, "
                                    "content groups and official splits.")
    i.add_argument("name", help="catalog name, see `mixiqa datasets`")
    i.add_argument("--root", required=True, help="the release folder (or its parent)")
    add_data_options(i)
    i.add_argument("--verify-images", action="store_true",
                   help="decode every present image and name each one that fails")
    i.add_argument("--save-manifest", metavar="CSV", help="write the loaded rows to a CSV file")
    i.add_argument("--format", choices=["table", "json"], default="table")
    i.set_defaults(func=cmd_datasets_inspect)


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-missing", action="store_true",
                   help="proceed with the images present when some listed ones are absent")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. column=MOS_zscore for koniq (repeatable)")


def parse_options(pairs: list[str]) -> dict:
    """``--option column=MOS_zscore`` pairs -> a dict (values read as YAML)."""
    return dict(parse_key_value(p, "--option", "column=MOS_zscore") for p in pairs)


def cmd_datasets_list(args) -> int:
    from mixiqa.data.catalog import DATASETS

    infos = [info for _, info in DATASETS.items()]
    if args.format == "json":
        print(json.dumps([info.__dict__ for info in infos], indent=1, default=list))
        return 0
    rows = [["name", "title", "kind", "images", "score", "range", "direction", "groups / labels"]]
    for d in infos:
        extras = ", ".join(x for x in [d.content_groups, *d.labels,
                                       "official split" if d.official_split else None] if x)
        rows.append([d.name, d.title, d.kind, str(d.n_images or "-"), d.score_name,
                     f"{d.score_range[0]:g} to {d.score_range[1]:g}", d.direction, extras])
    print(format_table(rows))
    print(f"\n{len(infos)} datasets. Inspect a release folder: "
          "mixiqa datasets inspect NAME --root DIR")
    return 0


def cmd_datasets_inspect(args) -> int:
    from mixiqa.data.datasets import load_manifest, scan_release, unreadable_message
    from mixiqa.data.manifest import Manifest

    options = parse_options(args.option)
    scan = scan_release(args.name, args.root, verify_images=args.verify_images, **options)
    summary = scan.summary()
    if args.format == "json":
        print(json.dumps(summary, indent=1))
    else:
        print_scan(summary, scan)
    if scan.unreadable:
        print("\n" + unreadable_message(scan.unreadable), file=sys.stderr)
        return 1
    if scan.missing and not args.allow_missing:
        # the same message the loaders give, so inspect tells exactly what training would say
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                load_manifest(args.name, args.root, show_progress=False, **options)
            except MixiqaError as e:
                print(f"\nnote: {e}", file=sys.stderr)
    elif scan.missing:
        print(f"\n--allow-missing: dropped {len(scan.missing)} missing images; "
              f"{len(scan.present)} remain.", file=sys.stderr if args.format == "json" else sys.stdout)
    if args.save_manifest:
        Manifest(scan.present).to_csv(args.save_manifest)
        print(f"wrote {len(scan.present)} rows to {args.save_manifest}")
    return 0


def print_scan(s: dict, scan) -> None:
    lo, hi = s["observed_range"]
    print(f"{scan.info.title} ({s['dataset']}) at {s['root']}")
    print(f"  images listed   {s['listed']}")
    print(f"  images present  {s['present']} of {s['listed']}")
    print(f"  images missing  {s['missing']}")
    if scan.unreadable or s["unreadable"]:
        print(f"  unreadable      {s['unreadable']}")
    print(f"  scores          {s['score_name']} {lo:g} to {hi:g} (theoretical "
          f"{s['theoretical_range'][0]:g} to {s['theoretical_range'][1]:g}), {s['direction']}")
    if s["groups"]:
        print(f"  content groups  {s['groups']} ({scan.info.content_groups})")
    if s["scenes"]:
        print(f"  scenes          {s['scenes']}")
    for split, c in s["official_split"].items():
        print(f"  official {split:<6} {c['present']} present of {c['listed']}")
    if scan.missing:
        few = ", ".join(Path(r.path).name for r in scan.missing[:5])
        print(f"  first missing   {few}")


# ---- splits -------------------------------------------------------------------------

def add_splits_command(sub) -> None:
    p = sub.add_parser("splits", help="make train/val/test split files for a dataset",
                       description="Write one JSON split file per seed (readable, reloadable).")
    p.add_argument("names", nargs="+", metavar="NAME", help="dataset name(s)")
    p.add_argument("--root", action="append", required=True,
                   help="release folder, once per dataset name, in the same order")
    p.add_argument("--protocol", default="random",
                   help="random | content | official | cross | loo-scene | loo-group")
    p.add_argument("--n", type=int, default=10, help="number of repeated splits (seeds 0..n-1)")
    p.add_argument("--ratios", default="0.6,0.2,0.2", help="train,val,test fractions")
    p.add_argument("--test-datasets", default="", help="cross protocol: datasets to test on")
    p.add_argument("--out", required=True, help="folder for the split files")
    add_data_options(p)
    p.set_defaults(func=cmd_splits)


def cmd_splits(args) -> int:
    from mixiqa.data.datasets import load_manifest
    from mixiqa.data.manifest import Manifest
    from mixiqa.data.splits import make_splits, repeated_splits

    if len(args.root) != len(args.names):
        raise MixiqaError(f"Give one --root per dataset: {len(args.names)} names, "
                          f"{len(args.root)} roots.")
    manifest = Manifest()
    for name, root in zip(args.names, args.root):
        manifest += load_manifest(name, root, allow_missing=args.allow_missing,
                                  **parse_options(args.option))
    ratios = tuple(float(x) for x in args.ratios.split(","))
    if args.protocol in {"random", "content"}:
        splits = repeated_splits(manifest, n=args.n, protocol=args.protocol, ratios=ratios)
    elif args.protocol == "official":
        splits = make_splits(manifest, "official", val_ratio=ratios[1], unlabelled_ratios=ratios)
    elif args.protocol == "cross":
        tests = [x for x in args.test_datasets.split(",") if x]
        splits = make_splits(manifest, "cross", test_datasets=tests,
                             train_datasets=[n for n in args.names if n not in tests])
    else:
        splits = make_splits(manifest, args.protocol, val_ratio=ratios[1])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, split in enumerate(splits):
        path = out / f"split_{i:02d}.json"
        split.save(path)
        print(f"{path}: train {len(split.train)}, val {len(split.val)}, test {len(split.test)}")
    return 0


# ---- train / eval / score / translate ------------------------------------------------

def add_train_commands(sub) -> None:
    p = sub.add_parser("train", help="train a model from an experiment config",
                       description="Train on every split of the config's protocol; writes "
                                   "config, split files, checkpoints, models and results.")
    p.add_argument("config", help="YAML or TOML experiment file (see configs/)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in --out where it stopped")
    p.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="metrics of a trained model on a dataset",
                       description="SRCC / KRCC / PLCC / RMSE (logistic fit) per dataset.")
    e.add_argument("run", help="run or model folder")
    e.add_argument("--data", action="append", required=True, metavar="NAME=ROOT",
                   help="dataset to evaluate on, e.g. clive=../shared/data/CLIVE (repeatable)")
    e.add_argument("--split", choices=["all", "test"], default="all",
                   help="'test': only the run's test images (needs a run folder with one split)")
    e.add_argument("--fit", default="logistic4", choices=["logistic4", "logistic5", "none"])
    add_data_options(e)
    e.set_defaults(func=cmd_eval)

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
                        "the raw proxy; default: the model's own output scale (the shipped "
                        "model: 0-100 on CLIVE's MOS scale), else q")
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


def cmd_train(args) -> int:
    from mixiqa.config import load_config
    from mixiqa.experiment import run_experiment

    cfg = load_config(args.config, args.set)
    summary = run_experiment(cfg, args.out, resume=args.resume)
    from mixiqa import distributed

    if not distributed.is_main():  # under torchrun, rank 0 reports
        return 0
    print(results_table(summary))
    print(f"\nrun folder: {args.out} (results.json, config.yaml, split_*/model)")
    return 0


def results_table(summary: dict) -> str:
    rows = [["dataset", "n test", "SRCC", "PLCC", "KRCC", "RMSE"]]
    for name, m in summary["per_dataset"].items():
        rows.append([name, f"{m.get('n', '')}"] + [f"{m[k]:.3f}" if m.get(k) is not None else "-"
                                                    for k in ("srcc", "plcc", "krcc", "rmse")])
    w = summary.get("weighted")
    if w:
        rows.append(["weighted"] + [""] + [f"{w[k]:.3f}" if w.get(k) is not None else "-"
                                            for k in ("srcc", "plcc", "krcc", "rmse")])
    n = summary.get("n_splits", 1)
    return format_table(rows) + f"\n(median over {n} split(s), seeds {summary.get('seeds')})"


def cmd_eval(args) -> int:
    from mixiqa.data.datasets import load_manifest
    from mixiqa.evaluate import evaluate
    from mixiqa.models.iqa import load_model
    from mixiqa.score import iter_scores

    model = load_model(args.run)
    rows = [["dataset", "n", "SRCC", "PLCC", "KRCC", "RMSE", "fit"]]
    for item in args.data:
        if "=" not in item:
            raise MixiqaError(f"--data '{item}' must look like NAME=ROOT, e.g. clive=../data/CLIVE.")
        name, root = item.split("=", 1)
        manifest = load_manifest(name, root, allow_missing=args.allow_missing,
                                 **parse_options(args.option))
        results = list(iter_scores(model, [r.path for r in manifest], device=_device(args)))
        ok = [(r, s.score) for r, s in zip(manifest, results) if s.score is not None]
        y = [r.score if r.higher_better else -r.score for r, _ in ok]
        m = evaluate([s for _, s in ok], y, fit=args.fit)
        rows.append([name, str(m.n)] + [f"{v:.3f}" for v in (m.srcc, m.plcc, m.krcc, m.rmse)]
                    + [m.fit])
    print(format_table(rows))
    return 0


def _device(args) -> str:
    from mixiqa.experiment import resolve_device

    return resolve_device(getattr(args, "device", "auto"))


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
        model.mapper(args.scale)  # unknown dataset -> clear error before any work
    device = _device(args)        # under torchrun this joins the process group
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


# ---- helpers ------------------------------------------------------------------------

def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
