"""OpenTelemetry traces as JSON: OTLP documents, the file exporter's JSON Lines, and span dumps.

Accepts the spec encoding (hex ids, integer enums, ns timestamps as strings or numbers),
the protobuf-JSON dialect (base64 ids, enum names), pre-2022 ``instrumentationLibrarySpans``,
a JSON array of requests, the Python SDK's ``ConsoleSpanExporter`` span dicts (which Monocle
writes), any-agent's ``AgentTrace`` (``{spans, final_output}``, decimal integer ids) and the
JavaScript SDK's ``ReadableSpan`` dumps (``spanContext``, ``[seconds, nanos]`` times).
GenAI semantic-convention, OpenInference, Vercel AI SDK, Monocle and Langfuse attributes are
mapped by ``semconv``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from binascii import unhexlify
from collections.abc import Iterator
from typing import IO, Any

import orjson

from tracedesk.core.importers import base
from tracedesk.core.importers.base import (
    RECORD_ERRORS,
    ReadContext,
    TraceFormatError,
    as_int,
    as_text,
    checked,
    iter_records,
    maybe_json,
    parse_time,
    record_problem,
    root_run,
)
from tracedesk.core.importers.semconv import (
    apply_attributes,
    move_rollup_usage,
    otel_attributes,
)
from tracedesk.core.importers.streams import open_decompressed
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
        return 0.5  # the Python SDK's console exporter, any-agent's AgentTrace
    if b'"spanContext"' in head and b'"spanId"' in head:
        return 0.5  # the JavaScript SDK's spans
    return 0.0


_SPAN = "resourceSpans.item.scopeSpans.item.spans.item"
_BUILT = {"resourceSpans.item.resource": "resource",
          "resourceSpans.item.scopeSpans.item.scope": "scope", _SPAN: "span"}  # fmt: skip


def read(stream: IO[bytes], ctx: ReadContext) -> Iterator[Run | Step]:
    if _big_document(stream, ctx):
        yield from _read_streamed(stream, ctx)
        return
    for where, record in iter_records(stream, ctx):
        if not isinstance(record, dict):
            ctx.bad(where, "expected a JSON object")
            continue
        try:
            if "resourceSpans" in record:
                yield from _request(record, where, ctx)
            elif "context" in record:
                yield from _console_span(record)
            elif "spanContext" in record:
                yield from _js_span(record)
            elif isinstance(record.get("spans"), list):
                yield from _agent_trace(record, where, ctx)
            else:
                ctx.bad(where, "not an OpenTelemetry span or request (no 'resourceSpans',"
                        " 'context' or 'spanContext')")  # fmt: skip
        except RECORD_ERRORS as exc:
            ctx.bad(where, record_problem(exc))


def _big_document(stream: IO[bytes], ctx: ReadContext) -> bool:
    """A big file that is not JSON Lines (its first line, up to 4 MB, is not a JSON value)."""
    if not os.path.isfile(ctx.path) or os.path.getsize(ctx.path) < base.STREAM_BYTES:
        return False
    with open(ctx.path, "rb") as raw:
        first = open_decompressed(raw).readline(base.FIRST_LINE_BYTES)
    try:
        orjson.loads(first)
    except orjson.JSONDecodeError:  # not JSON Lines: one document; stream it if it is OTLP
        return first.lstrip()[:1] in (b"{", b"[") and b'"resourceSpans"' in first[: 1 << 20]
    return False


def _read_streamed(stream: IO[bytes], ctx: ReadContext) -> Iterator[Run | Step]:
    """A big OTLP document (a request, or an array of them), one span at a time: each span
    is mapped as a request of its own with the resource and scope it sits under."""
    import ijson

    parts: dict[str, Any] = {"resource": {}, "scope": {}}
    builder: Any = None
    building, part, number = "", "", 0
    try:
        for prefix, event, value in ijson.parse(stream, use_float=True, multiple_values=True):
            if builder is not None:
                builder.event(event, value)
                if prefix == building and event == "end_map":
                    parts[part], builder = builder.value, None
                    if part == "span":
                        number += 1
                        request = {"resourceSpans": [{"resource": parts["resource"], "scopeSpans": [
                            {"scope": parts["scope"], "spans": [parts["span"]]}]}]}  # fmt: skip
                        yield from _request(request, f"span {number}", ctx)
            elif event == "start_map":  # in an array of requests, prefixes start with "item."
                part = _BUILT.get(prefix.removeprefix("item."), "")
                if part:
                    building, builder = prefix, ijson.ObjectBuilder()
                    builder.event(event, value)
    except ijson.JSONError as exc:
        raise TraceFormatError(
            ctx.path, f"after span {number}", f"malformed JSON ({exc})"
        ) from None


def normalize_id(value: Any, hex_length: int) -> str | None:
    """Lower-case hex for hex, base64 or integer OTLP ids; None for empty or all-zero ids."""
    if type(value) is str and len(value) == hex_length:  # the common case, three times a span
        try:
            lower_hex = unhexlify(value).hex() == value  # in C, faster than a strip or regex
        except (binascii.Error, ValueError):
            lower_hex = False
        if lower_hex:
            return value if value.strip("0") else None
    if value is None or value == "":
        return None
    if type(value) is int and value >= 0:  # any-agent writes the ids as decimal integers
        return f"{value:0{hex_length}x}" if value else None
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


def _request(request: dict[str, Any], where: str, ctx: ReadContext) -> Iterator[Run | Step]:
    """The spans of one request; a bad span is reported (or skipped) on its own, by its
    position and id."""
    number = 0
    for resource_spans in request.get("resourceSpans") or ():
        resource = otel_attributes((resource_spans.get("resource") or {}).get("attributes"))
        scopes = resource_spans.get("scopeSpans") or resource_spans.get(
            "instrumentationLibrarySpans"
        )
        for scope_spans in scopes or ():
            scope = scope_spans.get("scope") or scope_spans.get("instrumentationLibrary") or {}
            for span in scope_spans.get("spans") or ():
                number += 1
                try:
                    if not isinstance(span, dict):  # said so, compiled or not
                        raise ValueError("expected a JSON object")
                    yield from _span(span, resource, scope)
                except RECORD_ERRORS as exc:
                    span_id = span.get("spanId") if isinstance(span, dict) else None
                    named = f" (spanId {span_id!r})" if isinstance(span_id, str) else ""
                    ctx.bad(f"{where} span {number}{named}", record_problem(exc))


def _enum(value: Any, by_number: dict[int, Any], prefix: str) -> Any:
    if isinstance(value, int):
        return by_number.get(value)
    if isinstance(value, str):
        return value.removeprefix(prefix)
    return None


def _span(
    span: dict[str, Any], resource: dict[str, Any], scope: dict[str, Any]
) -> list[Run | Step]:
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
        name=as_text(span.get("name"), "name") or "",
        start_ns=parse_time(span.get("startTimeUnixNano")),
        end_ns=parse_time(span.get("endTimeUnixNano")),
        # An unknown status code is no reason to refuse the span: it is unset.
        status=STATUS_CODES.get(code, Status.UNSET) if isinstance(code, int) else
        STATUS_NAMES.get(str(code).removeprefix("STATUS_CODE_"), Status.UNSET),
    )  # fmt: skip
    if status.get("message"):
        step.error = as_text(status["message"], "error")
    extra: dict[str, Any] = {"otel.span_kind": _enum(span.get("kind"), SPAN_KINDS, "SPAN_KIND_")}
    if scope.get("name"):
        extra["otel.scope.name"] = scope["name"]
    if resource.get("service.name"):
        extra["service.name"] = resource["service.name"]
    for key in ("traceState", "flags", "links", "droppedAttributesCount"):
        if span.get(key):
            extra[f"otel.{key}"] = span[key]
    return _finish(
        step, otel_attributes(span.get("attributes")), span.get("events"), extra, resource
    )


def _finish(
    step: Step,
    attrs: dict[str, Any],
    events: Any,
    extra: dict[str, Any],
    resource: dict[str, Any],
) -> list[Run | Step]:
    """The step (after its run, for a root) with its attributes and events applied."""
    session = apply_attributes(step, attrs)
    for key, value in extra.items():
        if value is not None:
            step.attributes[key] = value
    if events:
        decoded = [_event(e) for e in events if isinstance(e, dict)]
        step.attributes["otel.events"] = decoded
        _apply_events(step, decoded)
    move_rollup_usage(step)
    if step.parent_id is None:
        run = root_run(step, NAME, session, resource)
        trace_name = attrs.get("langfuse.trace.name")  # the Langfuse SDK names its runs
        if isinstance(trace_name, str) and trace_name:
            run.name = trace_name
        return [run, checked(step)]
    return [checked(step)]


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
        elif event["name"] == "metadata":  # Monocle: the model call's token counts
            for field, key in MONOCLE_TOKENS:
                if getattr(step, field) is None:
                    setattr(step, field, as_int(attrs.get(key)))
        elif event["name"] == "data.input" and step.input is None and attrs:
            step.input = _only_value(attrs)
        elif event["name"] == "data.output" and step.output is None and attrs:
            step.output = _only_value(attrs)


MONOCLE_TOKENS = (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens"))


def _only_value(attrs: dict[str, Any]) -> Any:
    """Monocle's data events hold one attribute (input, query, response, output …)."""
    return maybe_json(next(iter(attrs.values()))) if len(attrs) == 1 else attrs


def _console_span(span: dict[str, Any]) -> list[Run | Step]:
    """One span as printed by opentelemetry-python's ``ReadableSpan.to_json()``, or as
    any-agent writes it (integer ids, the parent's context as ``parent``)."""
    context = span["context"]
    status = span.get("status") or {}
    parent = span.get("parent")
    parent_id = parent.get("span_id") if isinstance(parent, dict) else span.get("parent_id")
    step = Step(
        id=normalize_id(context["span_id"], 16) or "",
        run_id=normalize_id(context["trace_id"], 32) or "",
        parent_id=normalize_id(parent_id, 16),
        name=as_text(span.get("name"), "name") or "",
        start_ns=parse_time(span.get("start_time")),
        end_ns=parse_time(span.get("end_time")),
        status=STATUS_NAMES.get(str(status.get("status_code", "UNSET")).upper(), Status.UNSET),
        error=as_text(status.get("description"), "error"),
    )
    if not step.id or not step.run_id:
        raise ValueError("empty trace_id or span_id")
    resource = otel_attributes((span.get("resource") or {}).get("attributes"))
    extra = {"otel.span_kind": str(span.get("kind", "")).removeprefix("SpanKind.") or None}
    return _finish(
        step, otel_attributes(span.get("attributes")), span.get("events"), extra, resource
    )


def _agent_trace(record: dict[str, Any], where: str, ctx: ReadContext) -> Iterator[Run | Step]:
    """any-agent's ``AgentTrace``: console-style spans, and the agent's ``final_output``,
    which becomes the root step's output when the root recorded none."""
    final_output = record.get("final_output")
    for index, span in enumerate(record["spans"], 1):
        try:
            if not isinstance(span, dict):
                raise ValueError("expected a JSON object")
            for item in _console_span(span):
                if type(item) is Step and item.parent_id is None and item.output is None:
                    item.output = maybe_json(final_output)
                yield item
        except RECORD_ERRORS as exc:
            ctx.bad(f"{where} span {index}", record_problem(exc))


def _js_time(value: Any) -> int | None:
    """The JavaScript SDK's ``HrTime``: ``[seconds, nanoseconds]``."""
    if isinstance(value, list) and len(value) == 2:
        seconds, nanos = value
        if type(seconds) is int and type(nanos) is int:
            return seconds * 1_000_000_000 + nanos
        raise ValueError(f"not a [seconds, nanos] time: {value!r}")
    return parse_time(value)


def _js_span(span: dict[str, Any]) -> list[Run | Step]:
    """One span as the OpenTelemetry JavaScript SDK's ``ReadableSpan`` serialises to JSON."""
    context = span["spanContext"]
    parent = span.get("parentSpanContext")
    parent_id = parent.get("spanId") if isinstance(parent, dict) else span.get("parentSpanId")
    status = span.get("status") or {}
    code = status.get("code", 0)
    step = Step(
        id=normalize_id(context["spanId"], 16) or "",
        run_id=normalize_id(context["traceId"], 32) or "",
        parent_id=normalize_id(parent_id, 16),
        name=as_text(span.get("name"), "name") or "",
        start_ns=_js_time(span.get("startTime")),
        end_ns=_js_time(span.get("endTime")),
        status=STATUS_CODES.get(code, Status.UNSET) if isinstance(code, int) else Status.UNSET,
        error=as_text(status.get("message"), "error") or None,
    )
    if not step.id or not step.run_id:
        raise ValueError("empty traceId or spanId")
    resource = otel_attributes((span.get("resource") or {}).get("attributes"))
    extra = {"otel.span_kind": _enum(span.get("kind"), JS_SPAN_KINDS, "")}
    events = [
        {**e, "timeUnixNano": _js_time(e.get("time"))} for e in span.get("events") or ()
        if isinstance(e, dict)
    ]  # fmt: skip
    return _finish(step, otel_attributes(span.get("attributes")), events, extra, resource)


# The JavaScript SDK numbers span kinds from 0 = INTERNAL (the protocol's 0 is UNSPECIFIED).
JS_SPAN_KINDS = {0: "INTERNAL", 1: "SERVER", 2: "CLIENT", 3: "PRODUCER", 4: "CONSUMER"}
