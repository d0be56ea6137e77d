"""The ``mixiqa`` command: thin wrappers that parse arguments, call the library, print.

Each subcommand lives in a ``cmd_*`` function registered in :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from mixiqa import __version__
from mixiqa.errors import MixiqaError

EPILOG = """examples:
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
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise MixiqaError(f"--option '{pair}' must look like KEY=VALUE, e.g. column=MOS_zscore.")
        key, value = pair.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


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
              f"{len(scan.present)} remain.")
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
    from mixiqa.data.splits import make_splits

    if len(args.root) != len(args.names):
        raise MixiqaError(f"Give one --root per dataset: {len(args.names)} names, "
                          f"{len(args.root)} roots.")
    manifest = Manifest()
    for name, root in zip(args.names, args.root):
        manifest += load_manifest(name, root, allow_missing=args.allow_missing,
                                  **parse_options(args.option))
    kwargs: dict = {}
    if args.protocol in {"random", "content", "official"}:
        kwargs["ratios"] = tuple(float(x) for x in args.ratios.split(","))
    if args.protocol == "cross":
        kwargs["test_datasets"] = [x for x in args.test_datasets.split(",") if x]
    if args.protocol in {"random", "content"}:
        kwargs["n"] = args.n
    splits = make_splits(manifest, args.protocol, **kwargs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, split in enumerate(splits):
        path = out / f"split_{i:02d}.json"
        split.save(path)
        print(f"{path}: train {len(split.train)}, val {len(split.val)}, test {len(split.test)}")
    return 0


# ---- helpers ------------------------------------------------------------------------

def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except MixiqaError as e:
        print(f"mixiqa: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mixiqa: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
