"""tracedesk's own JSON Lines format (see docs/format.md): a header, run lines, step lines."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from tracedesk.core.importers.base import (
    RECORD_ERRORS,
    ReadContext,
    as_object,
    as_text,
    checked,
    first_json_line,
    iter_json_lines,
    parse_time,
    record_problem,
)
from tracedesk.core.model import Run, Status, Step, StepKind, to_decimal

NAME = "tracedesk"
FORMAT_VERSION = 1
KINDS = frozenset(StepKind)
STATUSES = frozenset(Status)
INT_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens",
              "cache_creation_tokens", "cache_write_1h_tokens")  # fmt: skip
TEXT_FIELDS = ("parent_id", "name", "error", "model", "provider", "tool_name")


def sniff(head: bytes) -> float:
    first = first_json_line(head)
    if not isinstance(first, dict):
        return 0.0
    if first.get("format") == NAME:
        return 1.0
    return 0.6 if first.get("type") in ("run", "step") else 0.0


def read(stream: IO[bytes], ctx: ReadContext) -> Iterator[Run | Step]:
    for line_no, value in iter_json_lines(stream, ctx):
        where = f"line {line_no}"
        if not isinstance(value, dict):
            ctx.bad(where, "expected a JSON object")
            continue
        kind = value.get("type")
        try:
            if kind == "step":
                yield checked(_step(value))
            elif kind == "run":
                yield checked(_run(value))
            elif kind == "header":
                version = value.get("version", FORMAT_VERSION)
                if not isinstance(version, int) or version > FORMAT_VERSION:
                    ctx.bad(where, f"format version {version!r} is not supported")
            else:
                ctx.bad(where, f"'type' must be 'run' or 'step', not {kind!r}")
        except RECORD_ERRORS as exc:
            ctx.bad(where, record_problem(exc))


def _required(value: dict[str, Any], name: str) -> str:
    field = value.get(name)
    if not isinstance(field, str) or not field:
        raise ValueError(f"missing required field {name!r}")
    return field


def _time(value: dict[str, Any], name: str) -> int | None:
    field = value.get(name)
    if isinstance(field, int) and not isinstance(field, bool):
        return field  # already ns: no unit guessing
    try:
        return parse_time(field)
    except ValueError as exc:
        raise ValueError(f"field {name!r}: {exc}") from None


def _status(value: dict[str, Any]) -> str:
    status = value.get("status", Status.UNSET)
    if not isinstance(status, str) or status not in STATUSES:
        raise ValueError(f"field 'status': {status!r} is not one of {sorted(STATUSES)}")
    return status


def _run(value: dict[str, Any]) -> Run:
    return Run(
        id=_required(value, "id"),
        source_format=as_text(value.get("source_format"), "source_format") or NAME,
        name=as_text(value.get("name"), "name") or "",
        request=as_text(value.get("request"), "request"),
        session_id=as_text(value.get("session_id"), "session_id"),
        start_ns=_time(value, "start_ns"),
        end_ns=_time(value, "end_ns"),
        status=_status(value),
        attributes=as_object(value.get("attributes"), "attributes"),
    )


def _step(value: dict[str, Any]) -> Step:
    kind = value.get("kind", StepKind.OTHER)
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"field 'kind': {kind!r} is not one of {sorted(KINDS)}")
    step = Step(
        id=_required(value, "id"),
        run_id=_required(value, "run_id"),
        kind=kind,
        start_ns=_time(value, "start_ns"),
        end_ns=_time(value, "end_ns"),
        status=_status(value),
        tool_args=value.get("tool_args"),
        input=value.get("input"),
        output=value.get("output"),
        attributes=value.get("attributes") or {},
    )
    for name in TEXT_FIELDS:
        field = value.get(name)
        if field is not None and not isinstance(field, str):
            raise ValueError(f"field {name!r} must be a string")
        if field is not None:
            setattr(step, name, field)
    for name in INT_FIELDS:
        field = value.get(name)
        if field is not None and (not isinstance(field, int) or isinstance(field, bool)):
            raise ValueError(f"field {name!r} must be an integer")
        setattr(step, name, field)
    try:
        step.reported_cost = to_decimal(value.get("reported_cost"))
    except ArithmeticError:
        raise ValueError("field 'reported_cost' is not a number") from None
    return step
