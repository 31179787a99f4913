"""``python -m deltaml.cli``: the same as the ``deltaml`` command."""

import sys

from deltaml.cli import main

if __name__ == "__main__":
    sys.exit(main())
