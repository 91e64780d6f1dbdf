"""Read a big trace file in other processes, so that the importing process only writes.

A JSON Lines file is cut at line starts into one part per core (``parts``); a worker
process per part reads it, gathers its runs and analyses each (``runs``), and sends their
rows (``Workers``). A file that cannot be cut (compressed, one document, protobuf) is read,
mapped and priced by one reader process that sends its records (``records``).

Both send batches of plain lists encoded with orjson: pickling Step objects costs as much
as mapping them, a JSON list a tenth of that. Progress, warnings and errors travel the
same pipe; the importing process raises a worker's or reader's TraceFormatError as its own.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from dataclasses import fields
from decimal import Decimal
from multiprocessing.connection import wait
from operator import attrgetter
from typing import IO, Any

import orjson
from mypy_extensions import mypyc_attr

from tracedesk.core.analysis.cost import price
from tracedesk.core.analysis.loops import Rules
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.collector import collector_paused
from tracedesk.core.importers import FORMATS, otlp_protobuf
from tracedesk.core.importers.base import (
    FIRST_LINE_BYTES,
    ReadContext,
    TraceFormatError,
)
from tracedesk.core.importers.streams import Range, open_decompressed
from tracedesk.core.model import CostParts, EncodedJSON, ImportResult, Run, Step, json_text
from tracedesk.core.runs import QUIET_RECORDS, Analyser, gathered, let_go
from tracedesk.core.store.rows import incident_row, price_key, run_row, step_row

# Records (a worker: steps) per message. Small enough that a few fit in the pipe at once,
# and that a batch the importing process decodes is still in its cache when inserted.
BATCH = 500
PIPE_BYTES = 1 << 20  # the most a Linux pipe may hold, by default, without privileges


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


def _pipe(context: Any) -> tuple[Any, Any]:
    """A one-way pipe that holds a few messages where the system allows it (Linux), not
    64 kB: a worker goes on reading while the importing process writes, where it waited
    (bench/README.md)."""
    receiver, sender = context.Pipe(duplex=False)
    with suppress(ImportError, AttributeError, OSError):  # no fcntl, or no such setting
        import fcntl

        fcntl.fcntl(receiver.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return receiver, sender


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
    if values[_COST] is not None:
        values[_COST] = Decimal(values[_COST])
    step = Step(*values[:_PRICED])
    cost, step.cost_source, parts = values[_PRICED:]
    step.cost = None if cost is None else Decimal(cost)
    step.cost_parts = None if parts is None else CostParts(*parts)
    return step


@contextmanager
def _reporting(conn: Any, result: ImportResult) -> Iterator[None]:
    """A reader's or worker's work, then its ending told to the importing process: its
    counts and warnings when done, or what stopped it (anything else is raised)."""
    try:
        yield
        conn.send_bytes(_control("done", result.bad_records, result.warnings, result.warning_count))
    except TraceFormatError as exc:
        conn.send_bytes(_control("error", exc.where, exc.problem))
    except (OSError, EOFError) as exc:
        conn.send_bytes(_control("error", "file", f"cannot read: {exc}"))
    finally:
        conn.close()


def _read(path: str, format: str, skip_bad: bool, conn: Any, pricing: Pricing) -> None:
    """The reader process: decompress, parse, map and price, sending batches as it goes."""
    result = ImportResult(path=path, format=format)
    ctx = ReadContext(path=path, result=result, skip_bad=skip_bad)
    with _reporting(conn, result), collector_paused(), open(path, "rb") as raw:
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


# -- a file in parts, each gathered and analysed by a worker process --------------------

MAX_WORKERS = 4


def parts(path: str, format: str, size: int) -> list[tuple[int, int]]:
    """Where to cut a big JSON Lines file for the workers: (start, end) byte ranges that
    begin at line starts. One part for what cannot be cut: a compressed file, a binary
    one, one JSON document."""
    count = min(os.cpu_count() or 1, MAX_WORKERS)
    if count < 2 or format == otlp_protobuf.NAME:
        return [(0, size)]
    with open(path, "rb") as raw:
        first = raw.readline(FIRST_LINE_BYTES)
        if first.startswith(b"\x1f\x8b"):
            return [(0, size)]
        try:
            orjson.loads(first.lstrip(b"\xef\xbb\xbf"))
        except orjson.JSONDecodeError:  # not JSON Lines
            return [(0, size)]
        cuts = [0]
        for k in range(1, count):
            raw.seek(max(size * k // count - 1, cuts[-1]))
            raw.readline()  # to the start of the next line
            if cuts[-1] < raw.tell() < size:
                cuts.append(raw.tell())
    return list(zip(cuts, [*cuts[1:], size], strict=True))


def _lines_before(raw: IO[bytes], offset: int) -> int:
    count = 0
    while offset > 0:
        chunk = raw.read(min(offset, 1 << 20))
        count += chunk.count(b"\n")
        offset -= len(chunk)
    return count


def _work(path: str, format: str, skip_bad: bool, conn: Any, pricing: Pricing, rules: Rules,
          start: int, end: int, size: int) -> None:  # fmt: skip
    """A worker process: read one part of a file, gather its runs and analyse each, and send
    them as rows (``ingest._Writer.write_package`` writes them).

    A run seen first near the start of the part, or still open at its end, may go on in
    the part before or after: its package carries its warnings, which the import keeps only
    if it does not."""
    result = ImportResult(path=path, format=format)
    with _reporting(conn, result), collector_paused(), open(path, "rb") as raw:
        ctx = ReadContext(path=path, result=result, skip_bad=skip_bad,
                          first_line=_lines_before(raw, start) + 1, json_lines=True)  # fmt: skip
        stream = io.BufferedReader(Range(raw, start, end), 1 << 20)
        analyser = Analyser(result, pricing, rules)
        batch: list[list[Any]] = []
        count = 0
        for run_id, entry in gathered(FORMATS[format].read(stream, ctx), result, None):
            given = _RUN_VALUES(entry.run) if entry.run is not None else (run_id, format)
            edge = (start > 0 and entry.first_seen < QUIET_RECORDS) or (entry.at_end and end < size)
            analyser.result = ImportResult(path=path, format=format) if edge else result
            run, steps, incidents = analyser.analysed(run_id, entry)
            try:
                step_rows = [step_row(s, None, price_key(s.cost_parts)) for s in steps]
            except ValueError as exc:  # a value the store cannot hold
                raise TraceFormatError(path, f"run {run_id}", str(exc)) from None
            batch.append([run_id, given, run_row(run, steps, None), step_rows,
                          [incident_row(i) for i in incidents],
                          analyser.result.warnings if edge else None])  # fmt: skip
            count += len(steps)
            let_go(steps)
            if count >= BATCH:
                conn.send_bytes(_encode(batch))
                conn.send_bytes(_control("progress", raw.tell() - start))
                batch, count = [], 0
        conn.send_bytes(_encode(batch))


@mypyc_attr(native_class=False)  # tests stand in for its processes
class Workers:
    """One worker process per part of a file (``parts``), started at once: the caller
    can do its own work (hash the file) while they read."""

    def __init__(self, path: str, format: str, skip_bad: bool, ranges: list[tuple[int, int]],
                 pricing: Pricing, rules: Rules):  # fmt: skip
        context = multiprocessing.get_context("spawn")  # never fork a process with GUI threads
        self.path, self.parts = path, len(ranges)
        self.processes: list[Any] = []
        self.receivers: list[Any] = []
        try:
            for start, end in ranges:
                receiver, sender = _pipe(context)
                self.receivers.append(receiver)
                worker = context.Process(target=_work, daemon=True, args=(
                    path, format, skip_bad, sender, pricing, rules, start, end, ranges[-1][1]))  # fmt: skip
                worker.start()
                sender.close()
                self.processes.append(worker)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for receiver in self.receivers:
            receiver.close()
        for worker in self.processes:
            if worker.is_alive():
                worker.terminate()
            worker.join()

    def packages(
        self, result: ImportResult, progress: Callable[[int], object] | None = None
    ) -> Generator[list, None, None]:
        """The runs the workers read, gathered and analysed, as packages for
        ``ingest._Writer.write_package``, in the order they come; but a run from the start
        of a part only once the part before has ended, so that a run cut in two is written
        in the order of the file and then merged.

        A bad record fails the import with the first error in the file: an error in a
        later part waits for the parts before it."""
        receivers, parts = self.receivers, self.parts
        done = [0] * parts
        held: list[list[list]] = [[] for _ in range(parts)]  # the runs from each part's start
        released = 0  # the parts whose held runs were given
        reports: list[tuple[int, list[str], int] | None] = [None] * parts
        errors: dict[int, tuple[str, str]] = {}
        count = 0
        waiting = dict(enumerate(receivers))
        while waiting:
            for ready in wait(list(waiting.values())):
                index = receivers.index(ready)
                if index not in waiting:  # stopped after an earlier part's error, meanwhile
                    continue
                try:
                    message = receivers[index].recv_bytes()
                except EOFError:
                    message = _control("error", "file", "a worker process stopped")
                tag, body = message[:1], message[1:]
                if tag in (JSON_BATCH, PICKLED_BATCH):
                    batch = orjson.loads(body) if tag == JSON_BATCH else pickle.loads(body)
                    count += len(batch)
                    if index > released:
                        held[index] += [p for p in batch if p[-1] is not None]
                        batch = [p for p in batch if p[-1] is None]
                    yield from batch
                    continue
                kind, *rest = pickle.loads(body)
                if kind == "progress":
                    done[index] = rest[0]
                    if progress is not None:
                        progress(sum(done))
                    continue
                del waiting[index]
                if kind == "error":
                    errors[index] = rest[0], rest[1]
                    for later in [k for k in waiting if k > index]:  # not needed: stop them
                        self.processes[later].terminate()
                        del waiting[later]
                else:
                    reports[index] = rest[0], rest[1], rest[2]
                while released + 1 < parts and reports[released] is not None:
                    released += 1
                    yield from held[released]
                    held[released] = []
            if errors and all(k not in waiting for k in range(min(errors))):
                raise TraceFormatError(self.path, *errors[min(errors)])
        for report in reports:  # the workers' counts and warnings, in the order of the file
            assert report is not None
            bad_records, warnings, warning_count = report
            result.bad_records += bad_records
            for warning in warnings:
                result.warn(warning)
            result.warning_count += warning_count - len(warnings)
        if count == 0:
            raise TraceFormatError(self.path, "file", "contains no runs or steps")


def records(
    path: str, format: str, skip_bad: bool, result: ImportResult,
    progress: Callable[[int], object] | None = None, pricing: Pricing | None = None,
) -> Iterator[Run | Step]:  # fmt: skip
    """The records of a file, read and mapped by a reader process, their steps priced."""
    context = multiprocessing.get_context("spawn")  # never fork a process with GUI threads
    receiver, sender = _pipe(context)
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
