"""Official release files -> manifest rows, one small parser per release format.

Every parser has the signature ``parse(root, info, **options) -> list[Record]`` and
returns EVERY image its score file lists (present on disk or not); presence, duplicate
and NaN checks happen once, in :func:`mixiqa.data.datasets.load_manifest`.
Parsers raise :class:`~mixiqa.errors.DataError` naming the file, the row and the fix
when a file does not match the official format.

- :mod:`.readers`: the file formats (MATLAB, CSV, text, spreadsheets) and cell checks;
- :mod:`.authentic`: photos with camera distortions (CLIVE, BIQ2021, BID, KonIQ-10k, SPAQ,
  CID2013);
- :mod:`.synthetic`: images made from references or prompts (LIVE, CSIQ, TID2013,
  KADID-10k, PIPAL, AGIQA-3K);
- :mod:`.manifest_file`: any other dataset, from a CSV or JSON file of the user's.
"""

from __future__ import annotations

from typing import Callable

from mixiqa.data.manifest import Record
from mixiqa.registry import Registry

Parser = Callable[..., list[Record]]
PARSERS: Registry[Parser] = Registry("dataset parser")

# Importing the modules registers their parsers (they import PARSERS from above).
from mixiqa.data.parsers import authentic, manifest_file, synthetic  # noqa: E402,F401
