"""Read, map and price a big trace file in a second process, so that parsing, mapping and
pricing run on one core while the import analyses and writes on another.

The reader sends records in batches of plain lists encoded with orjson: pickling Step
objects costs as much as mapping them, a JSON list a tenth of that. Progress, the
reader's warnings and its errors travel the same pipe; the importing process raises the
reader's TraceFormatError as its own.
"""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable, Iterator
from dataclasses import fields
from decimal import Decimal
from operator import attrgetter
from typing import Any

import orjson

from tracedesk.core.analysis.cost import price
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.collector import collector_paused
from tracedesk.core.importers import FORMATS
from tracedesk.core.importers.base import ReadContext, TraceFormatError, open_decompressed
from tracedesk.core.model import CostParts, EncodedJSON, ImportResult, Run, Step, json_text

BATCH = 2000  # records per message


def _read_fields(cls: type, first_derived: str) -> tuple[str, ...]:
    """The fields a reader fills, in dataclass order, so that cls(*values) rebuilds one."""
    names = [f.name for f in fields(cls)]
    return tuple(names[: names.index(first_derived)])


STEP_WIRE = _read_fields(Step, "depth")
RUN_WIRE = _read_fields(Run, "step_count")
_COST = STEP_WIRE.index("reported_cost")
# After the read fields, a step carries its price: cost, cost source, cost parts.
_PRICED = len(STEP_WIRE)
# Sent as JSON text and kept so: the importing process stores them as they are, and the
# loop detectors decode only the few they compare (decoding a batch's payloads and encoding
# them again to store them cost the importing process more than anything but the inserts).
_ENCODED = tuple(STEP_WIRE.index(name) for name in ("tool_args", "input", "output", "attributes"))
_STEP_VALUES = attrgetter(*STEP_WIRE)
_RUN_VALUES = attrgetter(*RUN_WIRE)


# Every message starts with a tag byte: a batch as JSON, a batch pickled, or a control
# message (progress, done, error) pickled.
JSON_BATCH, PICKLED_BATCH, CONTROL = b"J", b"P", b"C"


def _encode(batch: list[list[Any]]) -> bytes:
    try:
        return JSON_BATCH + orjson.dumps(batch, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # an integer wider than 64 bits somewhere: pickle keeps it exact
        return PICKLED_BATCH + pickle.dumps(batch)


def _control(*message: Any) -> bytes:
    return CONTROL + pickle.dumps(message)


def _flat(record: Run | Step) -> list[Any]:
    if isinstance(record, Step):
        values = list(_STEP_VALUES(record))
        if values[_COST] is not None:
            values[_COST] = str(values[_COST])
        for index in _ENCODED:
            values[index] = json_text(values[index])
        cost, parts = record.cost, record.cost_parts
        return [0, [*values, None if cost is None else str(cost), record.cost_source,
                    None if parts is None else list(parts)]]  # fmt: skip
    return [1, _RUN_VALUES(record)]


def _record(item: list[Any]) -> Run | Step:
    kind, values = item
    if kind == 1:
        return Run(*values)
    for index in _ENCODED:
        if values[index] is not None:
            values[index] = EncodedJSON(values[index])
    step = Step(*values[:_PRICED])
    if step.reported_cost is not None:
        step.reported_cost = Decimal(step.reported_cost)
    cost, step.cost_source, parts = values[_PRICED:]
    step.cost = None if cost is None else Decimal(cost)
    step.cost_parts = None if parts is None else CostParts(*parts)
    return step


def _read(path: str, format: str, skip_bad: bool, conn: Any, pricing: Pricing) -> None:
    """The reader process: decompress, parse, map and price, sending batches as it goes."""
    result = ImportResult(path=path, format=format)
    ctx = ReadContext(path=path, result=result, skip_bad=skip_bad)
    try:
        with collector_paused(), open(path, "rb") as raw:
            batch: list[list[Any]] = []
            for record in FORMATS[format].read(open_decompressed(raw), ctx):
                if isinstance(record, Step):
                    price(record, pricing)
                batch.append(_flat(record))
                if len(batch) == BATCH:
                    conn.send_bytes(_encode(batch))
                    conn.send_bytes(_control("progress", raw.tell()))
                    batch = []
            conn.send_bytes(_encode(batch))
        conn.send_bytes(_control("done", result.bad_records, result.warnings, result.warning_count))
    except TraceFormatError as exc:
        conn.send_bytes(_control("error", exc.where, exc.problem))
    except (OSError, EOFError) as exc:
        conn.send_bytes(_control("error", "file", f"cannot read: {exc}"))
    finally:
        conn.close()


def records(
    path: str, format: str, skip_bad: bool, result: ImportResult,
    progress: Callable[[int], None] | None = None, pricing: Pricing | None = None,
) -> Iterator[Run | Step]:  # fmt: skip
    """The records of a file, read and mapped by a reader process, their steps priced."""
    context = multiprocessing.get_context("spawn")  # never fork a process with GUI threads
    receiver, sender = context.Pipe(duplex=False)
    reader = context.Process(target=_read, daemon=True,
                             args=(path, format, skip_bad, sender, pricing or Pricing.load()))  # fmt: skip
    reader.start()
    sender.close()
    try:
        while True:
            try:
                message = receiver.recv_bytes()
            except EOFError:
                raise TraceFormatError(path, "file", "the reader process stopped") from None
            tag, body = message[:1], message[1:]
            if tag == JSON_BATCH:
                yield from map(_record, orjson.loads(body))
                continue
            if tag == PICKLED_BATCH:
                yield from map(_record, pickle.loads(body))
                continue
            kind, *rest = pickle.loads(body)
            if kind == "progress":
                if progress is not None:
                    progress(rest[0])
            elif kind == "error":
                raise TraceFormatError(path, rest[0], rest[1])
            else:  # done: the reader's own counts and warnings join the import's
                bad_records, warnings, warning_count = rest
                result.bad_records += bad_records
                for warning in warnings:
                    result.warn(warning)
                result.warning_count += warning_count - len(warnings)
                return
    finally:
        receiver.close()
        if reader.is_alive():
            reader.terminate()
        reader.join()
