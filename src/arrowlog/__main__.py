"""``python -m arrowlog``: the command line (see docs/CLI.md)."""

import sys

from arrowlog.cli import main

if __name__ == "__main__":
    sys.exit(main())
