"""OpenTelemetry traces: OTLP/JSON documents and the file exporter's JSON Lines.

Accepts the spec encoding (hex ids, integer enums, ns timestamps as strings or numbers),
the protobuf-JSON dialect (base64 ids, enum names), pre-2022 ``instrumentationLibrarySpans``,
a JSON array of requests, and the Python SDK's ``ConsoleSpanExporter`` span dicts.
GenAI semantic-convention and OpenInference attributes are mapped by ``semconv``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import IO, Any

from tracedesk.core.importers.base import (
    RECORD_ERRORS,
    ReadContext,
    checked,
    iter_records,
    parse_time,
    record_problem,
    root_run,
)
from tracedesk.core.importers.semconv import (
    apply_attributes,
    move_rollup_usage,
    otel_attributes,
)
from tracedesk.core.model import Run, Status, Step

NAME = "otlp"
SPAN_KINDS = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}
STATUS_CODES = {0: Status.UNSET, 1: Status.OK, 2: Status.ERROR}
STATUS_NAMES = {"UNSET": Status.UNSET, "OK": Status.OK, "ERROR": Status.ERROR}
HEX = re.compile(r"[0-9a-fA-F]+")


def sniff(head: bytes) -> float:
    if b'"resourceSpans"' in head or b'"instrumentationLibrarySpans"' in head:
        return 0.9
    if b'"context"' in head and b'"trace_id"' in head and b'"span_id"' in head:
        return 0.5  # the Python SDK's console exporter
    return 0.0


def read(stream: IO[bytes], ctx: ReadContext) -> Iterator[Run | Step]:
    for where, record in iter_records(stream, ctx):
        if not isinstance(record, dict):
            ctx.bad(where, "expected a JSON object")
            continue
        try:
            if "resourceSpans" in record:
                yield from _request(record)
            elif "context" in record:
                yield from _console_span(record)
            else:
                ctx.bad(where, "no 'resourceSpans' in this record")
        except RECORD_ERRORS as exc:
            ctx.bad(where, record_problem(exc))


def normalize_id(value: Any, hex_length: int) -> str | None:
    """Lower-case hex for hex or base64 OTLP ids; None for empty or all-zero ids."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"span or trace id must be a string, not {value!r}")
    text = value[2:] if value.startswith("0x") else value
    if len(text) == hex_length and HEX.fullmatch(text):
        result = text.lower()
    else:
        try:
            result = base64.b64decode(text, validate=True).hex()
        except (binascii.Error, ValueError):
            return value  # an opaque id from a non-conforming producer: keep it as is
    return None if not result.strip("0") else result


def _request(request: dict[str, Any]) -> Iterator[Run | Step]:
    for resource_spans in request.get("resourceSpans") or ():
        resource = otel_attributes((resource_spans.get("resource") or {}).get("attributes"))
        scopes = resource_spans.get("scopeSpans") or resource_spans.get(
            "instrumentationLibrarySpans"
        )
        for scope_spans in scopes or ():
            scope = scope_spans.get("scope") or scope_spans.get("instrumentationLibrary") or {}
            for span in scope_spans.get("spans") or ():
                yield from _span(span, resource, scope)


def _enum(value: Any, by_number: dict[int, Any], prefix: str) -> Any:
    if isinstance(value, int):
        return by_number.get(value)
    if isinstance(value, str):
        return value.removeprefix(prefix)
    return None


def _span(
    span: dict[str, Any], resource: dict[str, Any], scope: dict[str, Any]
) -> Iterator[Run | Step]:
    trace_id = normalize_id(span["traceId"], 32)
    span_id = normalize_id(span["spanId"], 16)
    if trace_id is None or span_id is None:
        raise ValueError("empty traceId or spanId")
    status = span.get("status") or {}
    code = status.get("code", 0)
    step = Step(
        id=span_id,
        run_id=trace_id,
        parent_id=normalize_id(span.get("parentSpanId"), 16),
        name=span.get("name") or "",
        start_ns=parse_time(span.get("startTimeUnixNano")),
        end_ns=parse_time(span.get("endTimeUnixNano")),
        status=STATUS_CODES.get(code) if isinstance(code, int) else
        STATUS_NAMES.get(str(code).removeprefix("STATUS_CODE_"), Status.UNSET),
    )  # fmt: skip
    if status.get("message"):
        step.error = status["message"]
    extra: dict[str, Any] = {"otel.span_kind": _enum(span.get("kind"), SPAN_KINDS, "SPAN_KIND_")}
    if scope.get("name"):
        extra["otel.scope.name"] = scope["name"]
    if resource.get("service.name"):
        extra["service.name"] = resource["service.name"]
    for key in ("traceState", "flags", "links", "droppedAttributesCount"):
        if span.get(key):
            extra[f"otel.{key}"] = span[key]
    yield from _finish(
        step, otel_attributes(span.get("attributes")), span.get("events"), extra, resource
    )


def _finish(
    step: Step,
    attrs: dict[str, Any],
    events: Any,
    extra: dict[str, Any],
    resource: dict[str, Any],
) -> Iterator[Run | Step]:
    session = apply_attributes(step, attrs)
    step.attributes.update({k: v for k, v in extra.items() if v is not None})
    if events:
        decoded = [_event(e) for e in events if isinstance(e, dict)]
        step.attributes["otel.events"] = decoded
        _apply_events(step, decoded)
    move_rollup_usage(step)
    if step.parent_id is None:
        yield root_run(step, NAME, session, resource)
    yield checked(step)


def _event(event: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": event.get("name"),
        "time_ns": parse_time(event.get("timeUnixNano") or event.get("timestamp")),
        "attributes": otel_attributes(event.get("attributes")),
    }


def _apply_events(step: Step, events: list[dict[str, Any]]) -> None:
    """Errors from ``exception`` events; prompt and completion from the v1.26 GenAI events."""
    for event in events:
        attrs = event["attributes"]
        if event["name"] == "exception":
            step.status = Status.ERROR
            if not step.error:
                kind, message = attrs.get("exception.type"), attrs.get("exception.message")
                step.error = ": ".join(str(p) for p in (kind, message) if p) or "exception"
        elif event["name"] == "gen_ai.content.prompt" and step.input is None:
            step.input = attrs.get("gen_ai.prompt")
        elif event["name"] == "gen_ai.content.completion" and step.output is None:
            step.output = attrs.get("gen_ai.completion")


CONSOLE_STATUS = {"UNSET": Status.UNSET, "OK": Status.OK, "ERROR": Status.ERROR}


def _console_span(span: dict[str, Any]) -> Iterator[Run | Step]:
    """One span as printed by opentelemetry-python's ``ReadableSpan.to_json()``."""
    context = span["context"]
    status = span.get("status") or {}
    step = Step(
        id=normalize_id(context["span_id"], 16) or "",
        run_id=normalize_id(context["trace_id"], 32) or "",
        parent_id=normalize_id(span.get("parent_id"), 16),
        name=span.get("name") or "",
        start_ns=parse_time(span.get("start_time")),
        end_ns=parse_time(span.get("end_time")),
        status=CONSOLE_STATUS.get(str(status.get("status_code", "UNSET")), Status.UNSET),
        error=status.get("description"),
    )
    if not step.id or not step.run_id:
        raise ValueError("empty trace_id or span_id")
    resource = otel_attributes((span.get("resource") or {}).get("attributes"))
    extra = {"otel.span_kind": str(span.get("kind", "")).removeprefix("SpanKind.") or None}
    yield from _finish(
        step, otel_attributes(span.get("attributes")), span.get("events"), extra, resource
    )
