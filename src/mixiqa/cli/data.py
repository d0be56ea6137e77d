"""``mixiqa datasets`` (list, inspect a release) and ``mixiqa splits`` (write split files)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

from mixiqa.cli.common import add_data_options, format_table, parse_options
from mixiqa.errors import MixiqaError


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
        stream = sys.stderr if args.format == "json" else sys.stdout   # keep JSON parseable
        print(f"\n--allow-missing: dropped {len(scan.missing)} missing images; "
              f"{len(scan.present)} remain.", file=stream)
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
