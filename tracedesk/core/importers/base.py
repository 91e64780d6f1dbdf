"""What every importer shares: errors that name the place, JSON reading, time parsing."""

from __future__ import annotations

import calendar
import json
import math
import os
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import IO, Any, Final, TypeVar

import orjson

from tracedesk.core.model import (
    ImportResult,
    Run,
    Status,
    Step,
    StepKind,
    request_text,
    to_decimal,
)

RecordT = TypeVar("RecordT", Run, Step)


class TraceFormatError(Exception):
    """Bad input: names the file, the line or record, and the problem."""

    def __init__(self, path: str, where: str, problem: str):
        super().__init__(f"{path}: {where}: {problem}")
        self.path, self.where, self.problem = path, where, problem


@dataclass
class ReadContext:
    """Handed to an importer's ``read``: where bad records are reported."""

    path: str
    result: ImportResult
    skip_bad: bool = False
    # A part of a JSON Lines file (a worker process reads one): the number of its first line.
    first_line: int = 1
    json_lines: bool = False  # known to be JSON Lines

    def __post_init__(self) -> None:
        _invalid_dates.texts = []  # noted outside any read: not this read's

    def bad(self, where: str, problem: str) -> None:
        """Fail the import, or with ``--skip-bad`` count the record and go on."""
        _invalid_dates.texts = []  # what the bad record noted is not the next record's
        if not self.skip_bad:
            raise TraceFormatError(self.path, where, problem)
        self.result.bad_records += 1
        self.result.warn(f"{where}: {problem} (skipped)")

    def warn(self, where: str, problem: str) -> None:
        self.result.warn(f"{where}: {problem}")


# What mapping a malformed record can raise (deep nesting included): reported as a bad record.
RECORD_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError)


def record_problem(exc: Exception) -> str:
    """A one-line description of why a record could not be mapped."""
    if isinstance(exc, KeyError):
        return f"missing required field {exc.args[0]!r}"
    return str(exc) or type(exc).__name__


def _json_problem(raw: bytes, error: Exception) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte {exc.start})"
    return f"malformed JSON ({error})"


def iter_json_lines(
    stream: IO[bytes], ctx: ReadContext, start: int | None = None
) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSON Lines stream."""
    for line_no, raw in enumerate(stream, ctx.first_line if start is None else start):
        if raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            problem = _json_problem(raw, exc)
            if not raw.endswith(b"\n") and problem.startswith("malformed"):
                problem = "last line is truncated: " + problem
            ctx.bad(f"line {line_no}", problem)
            continue
        yield line_no, value


# An integer literal too long for 64 bits, which orjson would read as an inexact float.
_HUGE_INT = re.compile(rb"[\[:,]\s*-?\d{20,}\s*[,\]}]")


def load_json_document(stream: IO[bytes], ctx: ReadContext) -> Any:
    """A whole JSON document (for formats that are one object or array)."""
    raw = stream.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TraceFormatError(ctx.path, "document", _json_problem(raw, exc)) from None
    if _HUGE_INT.search(raw):  # any-agent writes 128-bit trace ids as decimal integers
        value = json.loads(raw)
    return value


def first_json_line(head: bytes) -> Any:
    """The first JSON value of a JSON Lines head, or None."""
    for raw in head.splitlines():
        if raw.strip():
            try:
                return orjson.loads(raw.lstrip(b"\xef\xbb\xbf"))
            except orjson.JSONDecodeError:
                return None
    return None


_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:[.,](\d+))?\s*(Z|z|[+-]\d\d:?\d\d)?"
)


def parse_time(value: Any) -> int | None:
    """Integer ns since the epoch from ns/us/ms/s numbers, digit strings or ISO 8601.

    Naive ISO times are UTC. A date that does not exist gives None (see INVALID_DATE).
    Raises ValueError for anything else.
    """
    if value is None or value == "":
        return None
    if type(value) is str and len(value) == 19 and value.isdigit():
        return int(value)  # OTLP's ns as a decimal string: the common case, taken first
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            value = int(text)
        else:
            match = _ISO.fullmatch(text)
            if match is None:
                try:
                    value = float(text)
                except ValueError:
                    raise ValueError(f"not a time: {value!r}") from None
            else:
                return _iso_ns(match)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        magnitude = abs(value)
        # Pick the unit from the size: now is ~1.7e9 s, 1.7e12 ms, 1.7e15 us, 1.7e18 ns.
        scale = 1 if magnitude >= 1e17 else 1_000 if magnitude >= 1e14 else (
            1_000_000 if magnitude >= 1e11 else 1_000_000_000)  # fmt: skip
        return int(value) * scale if isinstance(value, int) else round(value * scale)
    raise ValueError(f"not a time: {value!r}")


# A time written as a date that does not exist (30 February, 24:00) leaves the time
# unknown. The record built next carries the text under this attribute, and the import
# warns, naming the step.
INVALID_DATE = "tracedesk.invalid_date"
_invalid_dates = threading.local()  # texts noted for the record being built


_UNSEEN = object()
_day_starts: dict[str, Any] = {}  # "YYYY-MM-DD": the second its day starts (UTC), or None
MAX_DAYS = 4096


def _day_start(year: int, month: int, day: int) -> int | None:
    """Seconds since the epoch at the start of a day (UTC); None for a date that does not
    exist (timegm would quietly turn 30 February into 2 March)."""
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    return calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0))


def _iso_ns(match: re.Match[str]) -> int | None:
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    hours, minutes, seconds = int(hour), int(minute), int(second)
    if not (hours < 24 and minutes < 60 and seconds <= 60):
        start = None
    else:  # a trace's times fall on few days: each day's start is worked out once
        date = match.string[:10]
        start = _day_starts.get(date, _UNSEEN)
        if start is _UNSEEN:
            if len(_day_starts) >= MAX_DAYS:
                _day_starts.clear()
            start = _day_starts[date] = _day_start(int(year), int(month), int(day))
    if start is None:
        _invalid_dates.texts = [*getattr(_invalid_dates, "texts", ()), match.group(0)]
        return None
    since_epoch = start + hours * 3600 + minutes * 60 + seconds
    if offset and offset not in "Zz":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        since_epoch -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return since_epoch * 1_000_000_000 + nanos


def as_int(value: Any) -> int | None:
    """A token count from an int, a float or a numeric string (sources send all three)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        raise ValueError(f"not a token count: {value!r}")
    return int(number)


def as_text(value: Any, field: str) -> str | None:
    """A source's value for a text field of a Step or Run: text as it is, a number as text
    (sources give numeric ids and names); anything else refuses the record, naming the
    field. Importers convert so before they set a field: compiled (setup.py), Step and Run
    would refuse a number with a TypeError."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"field {field!r} must be text, not {type(value).__name__}")


def as_object(value: Any, field: str) -> dict[str, Any]:
    """A source's attributes: an object, or nothing (an empty one)."""
    if not value:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be an object")
    return value


def as_cost(value: Any) -> Decimal | None:
    try:
        return to_decimal(value)
    except (InvalidOperation, ValueError):
        return None


def maybe_json(value: Any) -> Any:
    """Decode a JSON-encoded string payload (sources often double-encode); else as is."""
    if isinstance(value, str) and value[:1] in ("{", "[", '"'):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def iter_records(
    stream: IO[bytes],
    ctx: ReadContext,
    streamed_object: Callable[[IO[bytes], ReadContext], Iterator[tuple[str, Any]]] | None = None,
) -> Iterator[tuple[str, Any]]:
    """(where, value) for each record of a JSON Lines file or of one JSON document.

    JSON Lines stream line by line. A file whose first line is not a whole JSON value is
    one (pretty-printed) document, read whole; from STREAM_BYTES on, a top-level array is
    read element by element, and a top-level object by ``streamed_object`` where the format
    gives one. A JSON array, as a document or on a line, gives one record per element.
    """
    if ctx.json_lines:
        for number, value in iter_json_lines(stream, ctx):
            yield from _elements(f"line {number}", value, single=f"line {number}")
        return
    big = os.path.isfile(ctx.path) and os.path.getsize(ctx.path) >= STREAM_BYTES
    first, line_no = stream.readline(FIRST_LINE_BYTES if big else -1), 1
    while first and not first.strip():
        first, line_no = stream.readline(FIRST_LINE_BYTES if big else -1), line_no + 1
    try:
        orjson.loads(first.lstrip(b"\xef\xbb\xbf"))
        is_lines = True
    except orjson.JSONDecodeError:
        is_lines = False
    opening = first.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if not is_lines and big and opening == b"[":
        yield from _streamed_array(Prepend(first, stream), ctx)  # type: ignore[arg-type]
        return
    if not is_lines and big and opening == b"{" and streamed_object is not None:
        yield from streamed_object(Prepend(first, stream), ctx)  # type: ignore[arg-type]
        return
    if not is_lines:
        document = load_json_document(Prepend(first, stream), ctx)  # type: ignore[arg-type]
        yield from _elements("record", document)
        return
    lines = iter_json_lines(Prepend(first, stream), ctx, line_no)  # type: ignore[arg-type]
    for number, value in lines:
        yield from _elements(f"line {number}", value, single=f"line {number}")


# A single JSON document this big (on disk) is parsed as a stream where its shape allows
# (a top-level array here, OTLP requests in the OTLP reader), so that memory stays bounded.
STREAM_BYTES = 32 << 20
FIRST_LINE_BYTES = 4 << 20  # of a big file, enough to tell JSON Lines from one document


def _streamed_array(stream: IO[bytes], ctx: ReadContext) -> Iterator[tuple[str, Any]]:
    """The elements of a big top-level JSON array, one at a time."""
    import ijson

    number = 0
    try:
        for number, item in enumerate(ijson.items(stream, "item", use_float=True), 1):
            yield f"record {number}", item
    except ijson.JSONError as exc:
        raise TraceFormatError(
            ctx.path, f"after record {number}", f"malformed JSON ({exc})"
        ) from None


def _elements(where: str, value: Any, single: str | None = None) -> Iterator[tuple[str, Any]]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            yield f"{where} {index + 1}" if single is None else f"{single} record {index + 1}", item
    else:
        yield single or "document", value


class Prepend:
    """A stream with one already-read line put back in front."""

    def __init__(self, first: bytes, rest: IO[bytes]):
        self.first, self.rest = first, rest

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            head, self.first = self.first, b""
            return head + self.rest.read()
        if self.first:
            head, self.first = self.first[:size], self.first[size:]
            return head
        return self.rest.read(size)

    def __iter__(self) -> Iterator[bytes]:
        if self.first:
            yield self.first
            self.first = b""
        yield from self.rest


_MIN_INT64: Final = -(2**63)
MAX_TOKENS: Final = 10**12  # per step; anything above is corrupt data, and would overflow sums
MAX_COST: Final = 10**6  # USD per step (costs are stored as 64-bit pico-dollars)
_STEP_TEXT: Final = ("id", "run_id", "parent_id", "name", "error", "model", "provider",
                     "tool_name")  # fmt: skip
_STEP_INTS: Final = ("start_ns", "end_ns", "input_tokens", "output_tokens",
                     "cached_input_tokens", "reasoning_tokens", "cache_creation_tokens",
                     "cache_write_1h_tokens")  # fmt: skip
_RUN_TEXT: Final = ("id", "source_format", "name", "request", "session_id")
_KINDS: Final = frozenset(StepKind)
_STATUSES: Final = frozenset(Status)


def root_run(step: Step, source_format: str, session_id: Any, attributes: dict[str, Any]) -> Run:
    """The Run a root step stands for, named after it, asking what its input asked."""
    return checked(
        Run(
            id=step.run_id,
            source_format=source_format,
            name=step.name,
            request=request_text(step.input),
            session_id=as_text(session_id, "session_id"),
            attributes=attributes,
        )
    )


def checked(record: RecordT) -> RecordT:
    """Make sure a record fits the store's columns; raise ValueError naming the field.

    Dates that did not exist, noted while the record was built, join its attributes under
    INVALID_DATE. (Numbers given where text is expected were made text by ``as_text``.)
    """
    invalid_dates = getattr(_invalid_dates, "texts", None)
    if invalid_dates:
        _invalid_dates.texts = []
        if type(record.attributes) is dict:
            record.attributes = {**record.attributes, INVALID_DATE: invalid_dates}
    if isinstance(record, Step):
        _check_step(record)
    else:
        _check_run(record)
    return record


def _check_step(step: Step) -> None:
    # Field by field, not by attrgetter: compiled, a Step's fields are read without a lookup.
    _check_texts(_STEP_TEXT, (step.id, step.run_id, step.parent_id, step.name, step.error,
                              step.model, step.provider, step.tool_name))  # fmt: skip
    _check_ints((step.start_ns, step.end_ns, step.input_tokens, step.output_tokens,
                 step.cached_input_tokens, step.reasoning_tokens, step.cache_creation_tokens,
                 step.cache_write_1h_tokens))  # fmt: skip
    _check_common(step.id, step.attributes)
    cost = step.reported_cost
    if cost is not None and not (cost.is_finite() and abs(cost) < MAX_COST):
        raise ValueError(f"reported cost is not a plausible amount: {cost}")
    kind, status = step.kind, step.status
    if not (isinstance(kind, str) and kind in _KINDS and isinstance(status, str)
            and status in _STATUSES):  # fmt: skip
        raise ValueError(f"bad kind {kind!r} or status {status!r}")
    if not step.run_id:
        raise ValueError("empty run id")


def _check_run(run: Run) -> None:
    _check_texts(_RUN_TEXT, (run.id, run.source_format, run.name, run.request, run.session_id))
    _check_ints((run.start_ns, run.end_ns))
    _check_common(run.id, run.attributes)


def _check_texts(names: tuple[str, ...], values: tuple[str | None, ...]) -> None:
    """Not compiled, a field as_text was not applied to may hold anything."""
    for i in range(len(values)):  # by index: compiled, a zip costs more than the checks
        value = values[i]
        if value is not None and not isinstance(value, str):
            raise ValueError(f"field {names[i]!r} must be text, not {type(value).__name__}")


def _check_ints(values: tuple[int | None, ...]) -> None:
    """The times, then the token counts (in _STEP_INTS order)."""
    for i in range(len(values)):
        value = values[i]  # bit_length: compiled, a comparison with 2**63 is a slow one
        if value is not None and (
            type(value) is not int or (value.bit_length() > 63 and value != _MIN_INT64)
        ):
            raise ValueError(f"field {_STEP_INTS[i]!r} is not a 64-bit integer: {value!r}")
    for i in range(2, len(values)):
        value = values[i]
        if value is not None and not 0 <= value < MAX_TOKENS:
            raise ValueError(f"field {_STEP_INTS[i]!r} is not a plausible token count: {value}")


def _check_common(record_id: str, attributes: Any) -> None:
    if type(attributes) is not dict:
        raise ValueError("attributes must be an object")
    if not record_id:
        raise ValueError("empty id")
