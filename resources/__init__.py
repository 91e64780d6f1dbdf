"""Packaged resources: pricing table, icons, sample traces (installed as tracedesk.data)."""
