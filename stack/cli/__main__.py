"""``python -m stack.cli``: the ``pack391`` command (as the console script runs it)."""

import sys

from stack.cli import main

if __name__ == "__main__":
    sys.exit(main())
