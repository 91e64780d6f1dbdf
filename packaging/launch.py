"""Entry script of the PyInstaller bundle: the same command line as the installed package."""

import sys

from tracedesk.cli import main

if __name__ == "__main__":  # main() calls freeze_support() first, for the reader process
    sys.exit(main())
