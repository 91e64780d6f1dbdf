"""The importer registry and content-based format detection.

Each format module offers ``sniff(head: bytes) -> float`` (0 = not mine, 1 = certainly
mine) and a streaming ``read(stream, ctx)``; the best score wins.
"""

from __future__ import annotations

from types import ModuleType

from tracedesk.core.importers import langfuse, langsmith, native, openai_agents, otlp

FORMATS: dict[str, ModuleType] = {
    m.NAME: m for m in (native, otlp, langsmith, langfuse, openai_agents)
}


def detect(head: bytes) -> str | None:
    """The name of the format that scores best on the first bytes of a file, if any."""
    score, name = max((module.sniff(head), name) for name, module in FORMATS.items())
    return name if score > 0 else None
