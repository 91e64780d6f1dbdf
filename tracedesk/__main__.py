import sys

from tracedesk.cli import main

if __name__ == "__main__":  # not when a reader process imports this module again
    sys.exit(main())
