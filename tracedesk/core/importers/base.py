"""What every importer shares: errors that name the place, JSON reading, time parsing."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import IO, Any

import orjson

from tracedesk.core.model import to_decimal
from tracedesk.core.store import ImportResult


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

    def bad(self, where: str, problem: str) -> None:
        """Fail the import, or with ``--skip-bad`` count the record and go on."""
        if not self.skip_bad:
            raise TraceFormatError(self.path, where, problem)
        self.result.bad_records += 1
        self.result.warn(f"{where}: {problem} (skipped)")

    def warn(self, where: str, problem: str) -> None:
        self.result.warn(f"{where}: {problem}")


def _json_problem(raw: bytes, error: Exception) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte {exc.start})"
    return f"malformed JSON ({error})"


def iter_json_lines(stream: IO[bytes], ctx: ReadContext) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSON Lines stream."""
    for line_no, raw in enumerate(stream, 1):
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
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


def load_json_document(stream: IO[bytes], ctx: ReadContext) -> Any:
    """A whole JSON document (for formats that are one object or array)."""
    raw = stream.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TraceFormatError(ctx.path, "document", _json_problem(raw, exc)) from None


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

    Naive ISO times are UTC. Raises ValueError for anything else.
    """
    if value is None or value == "":
        return None
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
    if isinstance(value, (int, float)):
        magnitude = abs(value)
        # Pick the unit from the size: now is ~1.7e9 s, 1.7e12 ms, 1.7e15 us, 1.7e18 ns.
        scale = 1 if magnitude >= 1e17 else 1_000 if magnitude >= 1e14 else (
            1_000_000 if magnitude >= 1e11 else 1_000_000_000)  # fmt: skip
        return int(value) * scale if isinstance(value, int) else round(value * scale)
    raise ValueError(f"not a time: {value!r}")


def _iso_ns(match: re.Match[str]) -> int:
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    seconds = calendar.timegm(
        (int(year), int(month), int(day), int(hour), int(minute), int(second), 0, 0, 0)
    )
    if offset and offset not in "Zz":
        sign = -1 if offset[0] == "-" else 1
        digits = offset[1:].replace(":", "")
        seconds -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


def as_int(value: Any) -> int | None:
    """A token count from an int, a float or a numeric string (sources send all three)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


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
