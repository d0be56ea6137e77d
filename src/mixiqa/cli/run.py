"""``mixiqa train`` (an experiment config -> a run folder) and ``mixiqa eval``."""

from __future__ import annotations

from pathlib import Path

from mixiqa.cli.common import add_data_options, device_of, format_table, parse_options
from mixiqa.errors import ConfigError, MixiqaError


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
    """Per-dataset (and weighted) medians of a run's summary, one row each."""
    def cells(m: dict) -> list[str]:
        return [f"{m[k]:.3f}" if m.get(k) is not None else "-"
                for k in ("srcc", "plcc", "krcc", "rmse")]

    rows = [["dataset", "n test", "SRCC", "PLCC", "KRCC", "RMSE"]]
    for name, m in summary["per_dataset"].items():
        rows.append([name, f"{m.get('n', '')}"] + cells(m))
    w = summary.get("weighted")
    if w:
        rows.append(["weighted", ""] + cells(w))
    n = summary.get("n_splits", 1)
    return format_table(rows) + f"\n(median over {n} split(s), seeds {summary.get('seeds')})"


def cmd_eval(args) -> int:
    from mixiqa.data.datasets import load_manifest
    from mixiqa.data.manifest import Manifest
    from mixiqa.data.splits import record_key
    from mixiqa.evaluate import evaluate
    from mixiqa.models.iqa import load_model
    from mixiqa.score import iter_scores

    split = run_split(args.run) if args.split == "test" else None
    model = load_model(args.run)
    rows = [["dataset", "n", "SRCC", "PLCC", "KRCC", "RMSE", "fit"]]
    for item in args.data:
        if "=" not in item:
            raise MixiqaError(f"--data '{item}' must look like NAME=ROOT, "
                              "e.g. clive=../data/CLIVE.")
        name, root = item.split("=", 1)
        manifest = load_manifest(name, root, allow_missing=args.allow_missing,
                                 **parse_options(args.option))
        if split is not None:   # only the images this run held out for its test
            test = set(split.test)
            manifest = Manifest([r for r in manifest if record_key(r) in test])
            if not len(manifest):
                raise ConfigError(f"None of the {name} images at {root} is in the test part "
                                  f"of {split.source}: evaluate on a dataset the run was "
                                  "trained on (same name and options), or drop --split test.")
        results = list(iter_scores(model, [r.path for r in manifest], device=device_of(args)))
        ok = [(r, s.score) for r, s in zip(manifest, results) if s.score is not None]
        y = [r.score if r.higher_better else -r.score for r, _ in ok]
        m = evaluate([s for _, s in ok], y, fit=args.fit)
        rows.append([name, str(m.n)] + [f"{v:.3f}" for v in (m.srcc, m.plcc, m.krcc, m.rmse)]
                    + [m.fit])
    print(format_table(rows))
    return 0


def run_split(run: str):
    """The split file beside a run's model (``split_NN/split.json``), for ``--split test``."""
    from mixiqa.data.splits import Split
    from mixiqa.models.iqa import read_meta, resolve_model_folder

    folder = resolve_model_folder(Path(run))
    read_meta(folder)              # no model there at all: say that, not "no split file"
    path = folder.parent / "split.json"
    if not path.is_file():
        raise ConfigError(f"--split test needs the run's split file, and there is no {path}: "
                          "pass a run folder written by `mixiqa train` (one split, or its "
                          "split_NN folder), or use --split all.")
    return Split.load(path)
