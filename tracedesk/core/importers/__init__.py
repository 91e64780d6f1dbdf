"""Trace importers: one module per format, each with ``sniff(head)`` and ``read(stream, ctx)``.

``detect`` asks every format to score the first bytes of the file and takes the best;
``import_file`` streams the chosen reader into the store in one transaction.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import IO

from tracedesk.core.analysis.cost import PRICING_META_KEY, apply_costs
from tracedesk.core.analysis.loops import RULES_META_KEY, Rules, apply_incidents
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.importers.base import ReadContext, TraceFormatError
from tracedesk.core.importers.detect import FORMATS, describe, detect
from tracedesk.core.model import Run, Step
from tracedesk.core.store import ImportResult, Store

__all__ = ["FORMATS", "TraceFormatError", "detect", "import_file"]

HEAD_SIZE = 64 * 1024
PROGRESS_EVERY = 2000  # records between progress reports

Progress = Callable[[int, int], None]  # (bytes read, total bytes)


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    """The file's content, gunzipped when it starts with the gzip magic bytes."""
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    return raw


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def import_file(
    store: Store,
    path: str | Path,
    format: str | None = None,
    skip_bad: bool = False,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    pricing: Pricing | None = None,
    rules: Rules | None = None,
) -> ImportResult:
    """Import one trace file (optionally gzip-compressed) into the store, priced.

    Raises TraceFormatError for bad input (the store is left unchanged), ImportCancelled
    when ``cancelled()`` turns true, and OSError when the file cannot be read.
    """
    path = Path(path)
    name = str(path)
    total = path.stat().st_size
    if total == 0:
        raise TraceFormatError(name, "file", "the file is empty")
    sha256 = file_sha256(path)
    with path.open("rb") as raw:
        try:
            head = _decompressed(raw).read(HEAD_SIZE)
        except (OSError, EOFError) as exc:
            raise TraceFormatError(name, "file", f"cannot decompress: {exc}") from None
    if format is None:
        format = detect(head)
        if format is None:
            raise TraceFormatError(
                name,
                "start of file",
                f"not a trace format tracedesk reads: {describe(head)}."
                f" tracedesk reads {', '.join(FORMATS)}",
            )
    elif format not in FORMATS:
        raise TraceFormatError(name, "--format", f"unknown format {format!r}")
    result = ImportResult(path=name, format=format)
    if store.find_import(sha256) is not None:
        result.already_imported = True
        return result
    ctx = ReadContext(path=name, result=result, skip_bad=skip_bad)
    with path.open("rb") as raw:
        stream = _decompressed(raw)
        records = _watch(FORMATS[format].read(stream, ctx), raw, total, progress, ctx)
        try:
            store.ingest(
                records, result, sha256, cancelled, finish=partial(_analyse, store, pricing, rules)
            )
        except (OSError, EOFError) as exc:  # a corrupt gzip stream surfaces while reading
            raise TraceFormatError(name, "file", f"cannot read: {exc}") from None
    return result


def _analyse(store: Store, pricing: Pricing | None, rules: Rules | None, run_ids: set[str]) -> None:
    """Price the imported runs and find their loops, in the import's transaction; every run
    when the prices or rules changed since they were last applied."""
    pricing = pricing or Pricing.load()
    same_prices = store.get_meta(PRICING_META_KEY) == pricing.fingerprint
    apply_costs(store, pricing, run_ids if same_prices else None)
    rules = rules or Rules.load()
    same_rules = same_prices and store.get_meta(RULES_META_KEY) == rules.fingerprint
    apply_incidents(store, rules, run_ids if same_rules else None)


def _watch(
    records: Iterator[Run | Step],
    raw: IO[bytes],
    total: int,
    progress: Progress | None,
    ctx: ReadContext,
) -> Iterator[Run | Step]:
    """Pass records through, reporting progress, and refuse a file with no runs."""
    count = 0
    for count, record in enumerate(records, 1):
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(raw.tell(), total)
        yield record
    if count == 0:
        raise TraceFormatError(ctx.path, "file", "contains no runs or steps")
    if progress is not None:
        progress(total, total)
