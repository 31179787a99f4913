"""``python -m deltaml``: the same as the ``deltaml`` command."""

import sys

from deltaml.cli import main

sys.exit(main())
