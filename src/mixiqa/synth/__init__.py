"""The synthetic ground-truth alignment benchmark (``mixiqa synth``).

Real IQA datasets rate different parts of the quality range on different scales, and
the common quality axis is unknown, so one cannot measure how well a mixed-dataset
method aligns them. Here it is known: pristine photos get 18 distortion types x 5
levels, a full-reference index (HaarPSI) gives each image a latent quality, and K
synthetic datasets each keep a window of that axis and rate it through their own
monotone nonlinear transform, range, direction and rater noise. A method aligns well
when its proxy score q ranks the test images of ALL datasets together by the latent
quality (pooled alignment SRCC).

    mixiqa synth build --sources skimage --datasets 2 --out /tmp/synth
    mixiqa synth build --sources clive=DATA/CLIVE --sources biq2021=DATA/BIQ2021 --top 40 \
        --out /tmp/synth
    mixiqa synth run /tmp/synth --methods naive,linear,monotonic,sind --splits 3 \
        --out /tmp/synth-run
    mixiqa synth run /tmp/synth --swap syn_a,syn_c --out /tmp/synth-swap

The library lives in :mod:`mixiqa.synth.spec` (what a benchmark is),
:mod:`mixiqa.synth.sources` (sources, latent quality), :mod:`mixiqa.synth.build`
(rendering and annotation) and :mod:`mixiqa.synth.evaluation` (alignment scores, runner);
this module re-exports their public names and holds the command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mixiqa.errors import ConfigError
from mixiqa.synth.build import build_synth, experiment_dict
from mixiqa.synth.evaluation import (alignment_scores, markdown_table, reannotate,
                                     run_synth_benchmark, swapped_build)
from mixiqa.synth.sources import (latent_quality, load_source, resolve_sources,
                                  skimage_sources, top_rated_sources)
from mixiqa.synth.spec import (SynthDataset, SynthSpec, default_spec, load_spec,
                               swap_transforms)

DEFAULT_METHODS = "naive,linear,monotonic,sind"

__all__ = ["SynthDataset", "SynthSpec", "default_spec", "load_spec", "swap_transforms",
           "build_synth", "experiment_dict", "alignment_scores", "run_synth_benchmark",
           "reannotate", "swapped_build", "markdown_table", "latent_quality", "load_source",
           "resolve_sources", "skimage_sources", "top_rated_sources",
           "add_synth_command", "cmd_synth"]


def add_synth_command(sub) -> None:
    """Add ``synth build`` and ``synth run`` to the ``mixiqa`` subparsers."""
    p = sub.add_parser("synth", help="synthetic ground-truth alignment benchmark",
                       description="Build synthetic datasets with a known common quality axis, "
                                   "then measure how well each method aligns them.")
    ssub = p.add_subparsers(dest="synth_command", metavar="SUBCOMMAND")
    ssub.required = True
    b = ssub.add_parser("build", help="render, measure and annotate the synthetic datasets")
    b.add_argument("--sources", action="append", required=True, metavar="SRC",
                   help="'skimage' (photos bundled with scikit-image), a folder of photos, or "
                        "NAME=ROOT of a catalogued dataset (its best-rated images); repeatable")
    b.add_argument("--top", type=int, help="at most N images per --sources (best-rated first)")
    b.add_argument("--out", required=True, help="build folder (re-running resumes)")
    b.add_argument("--datasets", type=int, default=4, help="number of synthetic datasets")
    b.add_argument("--seed", type=int, help="seed of everything random (default 0, or the spec's)")
    b.add_argument("--size", type=int,
                   help="square size of every image (default 256, or the spec's)")
    b.add_argument("--types", help="comma-separated distortion types (default: all)")
    b.add_argument("--spec", help="a spec file (configs/synth.yaml) instead of --datasets/--types")
    b.set_defaults(func=cmd_synth)
    r = ssub.add_parser("run", help="train every method on the same splits; alignment table")
    r.add_argument("dir", help="a build folder")
    r.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated method names")
    r.add_argument("--splits", type=int, default=3, help="content splits (seeds 0..N-1)")
    r.add_argument("--out", required=True, help="results folder")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a value of the build's experiment.yaml (repeatable)")
    r.add_argument("--swap", metavar="A,B",
                   help="re-rate with datasets A and B trading annotation transforms first")
    r.add_argument("--resume", action="store_true", help="reuse finished splits in --out")
    r.add_argument("--oracle", metavar="METHOD",
                   help="also train METHOD on the latent quality itself: the ceiling that "
                        "the features allow, with no alignment to do (e.g. naive)")
    r.set_defaults(func=cmd_synth)


def cmd_synth(args: argparse.Namespace) -> int:
    """Run ``synth build`` or ``synth run``; returns the exit code."""
    if args.synth_command == "build":
        return _cmd_build(args)
    return _cmd_run(args)


def _cmd_build(args: argparse.Namespace) -> int:
    if args.spec:
        spec = load_spec(args.spec)
        spec.seed = spec.seed if args.seed is None else args.seed
        spec.size = spec.size if args.size is None else args.size
    else:
        types = [t.strip() for t in args.types.split(",")] if args.types else None
        spec = default_spec(args.datasets, seed=args.seed or 0, distortions=types,
                            size=args.size or 256)
    origins = resolve_sources(args.sources, args.top)
    doc = build_synth(origins, args.out, spec)
    for name, w in doc["windows"].items():
        ds = spec.dataset(name)
        direction = "MOS" if ds.higher_better else "DMOS"
        print(f"{name}: {w['n']} images, latent {w['latent'][0]:.3f}-{w['latent'][1]:.3f}, "
              f"{ds.transform}({ds.transform_param:g}) -> {direction} "
              f"{ds.score_range[0]:g}-{ds.score_range[1]:g}, {len(ds.distortions)} types")
    print(f"diagnostics: {doc['diagnostics']}")
    print(f"\nbuild folder: {args.out} (mixiqa synth run {args.out} --out RUN)")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    synth_dir, out = Path(args.dir), Path(args.out)
    if not (synth_dir / "experiment.yaml").is_file():
        raise ConfigError(f"'{synth_dir}' is not a synthetic build (no experiment.yaml); make "
                          "one with `mixiqa synth build`.")
    data_dir = synth_dir
    if args.swap:
        names = [n.strip() for n in args.swap.split(",")]
        if len(names) != 2:
            raise ConfigError(f"--swap '{args.swap}' must name two datasets, e.g. syn_a,syn_c.")
        data_dir = swapped_build(synth_dir, names[0], names[1], out / "data")
        print(f"re-rated with {names[0]} <-> {names[1]} transforms: {data_dir}")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    doc = run_synth_benchmark(data_dir, methods, args.splits, out, args.set,
                              resume=args.resume, oracle=args.oracle)
    print(markdown_table(doc))
    print(f"results: {out / 'synth_results.json'}")
    return 0
