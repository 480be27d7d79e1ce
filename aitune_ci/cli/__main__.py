"""``python -m aitune_ci.cli``: the ``aitune-ci`` command where the console script is not on PATH."""

import sys

from aitune_ci.cli import main

sys.exit(main())
