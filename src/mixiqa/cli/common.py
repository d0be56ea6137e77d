"""Options and printing shared by the ``mixiqa`` subcommands."""

from __future__ import annotations

import argparse

from mixiqa.config import parse_key_value


def add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-missing", action="store_true",
                   help="proceed with the images present when some listed ones are absent")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. column=MOS_zscore for koniq (repeatable)")


def parse_options(pairs: list[str]) -> dict:
    """``--option column=MOS_zscore`` pairs -> a dict (values read as YAML)."""
    return dict(parse_key_value(p, "--option", "column=MOS_zscore") for p in pairs)


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def device_of(args) -> str:
    """The --device option (``auto`` if the command has none) -> a torch device name."""
    from mixiqa.experiment import resolve_device

    return resolve_device(getattr(args, "device", "auto"))
