"""The only code that knows where packaged resources live (pricing, icons, samples).

The repository's top-level ``resources/`` folder is installed as the package
``tracedesk.data`` (see pyproject.toml), so this works from a wheel and an editable
install alike.
"""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable


def resource(*parts: str) -> Traversable:
    path = resources.files("tracedesk.data")
    for part in parts:  # one at a time: a namespace package's MultiplexedPath takes one
        path = path / part
    return path


def demo_traces() -> Traversable:
    return resource("samples", "demo.tracedesk.jsonl")
