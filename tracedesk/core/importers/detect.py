"""The importer registry and content-based format detection.

Each format module offers ``sniff(head: bytes) -> float`` (0 = not mine, 1 = certainly
mine) and a streaming ``read(stream, ctx)``; the best score wins.
"""

from __future__ import annotations

import re
from types import ModuleType

from tracedesk.core.importers import (
    langfuse,
    langsmith,
    native,
    openai_agents,
    otlp,
    otlp_protobuf,
)

FORMATS: dict[str, ModuleType] = {
    m.NAME: m for m in (native, otlp, otlp_protobuf, langsmith, langfuse, openai_agents)
}


def describe(head: bytes) -> str:
    """What the start of an unrecognised file looks like, for the error message."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] not in (b"{", b"["):
        shown = text[:16].decode("utf-8", "backslashreplace").encode("unicode_escape").decode()
        return f"it is not JSON (it starts with '{shown}')"
    keys = [k.decode("utf-8", "replace") for k in _KEY.findall(text[:4096])][:6]
    container = "a JSON array" if text[:1] == b"[" else "JSON"
    if not keys:
        return f"it is {container} without object keys"
    return f"it is {container} with keys " + ", ".join(dict.fromkeys(keys))


_KEY = re.compile(rb'"([^"\\]{1,40})"\s*:')


def detect(head: bytes) -> str | None:
    """The name of the format that scores best on the first bytes of a file, if any."""
    score, name = max((module.sniff(head), name) for name, module in FORMATS.items())
    return name if score > 0 else None
