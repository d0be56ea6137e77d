"""Errors a user can act on. Each message names the thing at fault and what to do."""

import sys
import warnings
from typing import Callable


class MixiqaError(Exception):
    """Base class of every error mixiqa raises for bad input."""


class DataError(MixiqaError, ValueError):
    """A dataset, score file, image or split file is missing, malformed or inconsistent."""


class ConfigError(MixiqaError, ValueError):
    """A configuration value or a name (dataset, backbone, mapper...) is not valid."""


def run_command(main: Callable[[], int | None], prog: str = "mixiqa") -> int:
    """Run a command's body the way the ``mixiqa`` CLI and the benchmark scripts do: a
    :class:`MixiqaError` becomes one ``prog: error: ...`` line and exit status 2 instead of
    a traceback (the message already says what to fix), Ctrl-C exits with 130, and
    warnings print as one line each."""
    warnings.formatwarning = lambda msg, cat, *a, **k: f"{prog}: warning: {msg}\n"
    try:
        return main() or 0
    except MixiqaError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
