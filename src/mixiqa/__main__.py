"""``python -m mixiqa ...`` (and ``torchrun -m mixiqa ...``): the command line."""

import sys

from mixiqa.cli import main

sys.exit(main())
