"""``python -m mollia_core``: see :mod:`mollia_core.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
