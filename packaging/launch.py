"""Entry script of the PyInstaller bundle: the same command line as the installed package."""

import sys

from tracedesk.cli import main

sys.exit(main())
