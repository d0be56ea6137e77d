"""The ``mixiqa`` command: thin wrappers that parse arguments, call the library, print.

Each subcommand lives in a ``cmd_*`` function, registered in :func:`build_parser` by an
``add_*_command(s)`` function beside it: data (datasets, splits), run (train, eval), score
(score, merge-scores, translate, ensemble); bench, report, pretrain, synth and demo keep theirs in
their own modules.
"""

from __future__ import annotations

import argparse
import sys

from mixiqa import __version__
from mixiqa.cli.data import add_datasets_commands, add_splits_command
from mixiqa.cli.run import add_train_commands
from mixiqa.cli.score import add_score_commands
from mixiqa.errors import run_command

EPILOG = """examples:
  mixiqa train configs/quickstart.yaml --out runs/quick    train (CLIVE + BIQ2021, CPU, minutes)
  mixiqa eval runs/quick --data clive=../shared/data/CLIVE --allow-missing
  mixiqa score photos/ --model runs/quick --format csv     one score per image
  mixiqa translate --model runs/quick --from clive --to biq2021 55 70
  mixiqa ensemble runs/quick runs/quick-mimi --out runs/pair   average two models into one
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
    add_score_commands(sub)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
