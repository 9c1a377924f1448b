"""``python -m experiments``: the ``nst`` command line."""

import sys

from ._cli import main

sys.exit(main())
