"""Trace importers: one module per format, each with ``sniff(head)`` and ``read(stream, ctx)``.

They only read: ``detect`` asks every format to score the first bytes of a file and takes
the best, and ``tracedesk.core.ingest`` streams the chosen reader into the database.
"""

from __future__ import annotations

from tracedesk.core.importers.base import TraceFormatError
from tracedesk.core.importers.detect import FORMATS, describe, detect

__all__ = ["FORMATS", "TraceFormatError", "describe", "detect"]
