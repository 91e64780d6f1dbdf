"""OTLP protobuf: a binary ``ExportTraceServiceRequest`` (``.pb``, optionally gzip-compressed),
decoded with the official ``opentelemetry-proto`` package.

Each span is turned into the shape of an OTLP/JSON span (hex ids, flat attributes) and mapped
by the JSON importer, so both encodings give the same steps. The local receiver reuses
``decode_request``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from tracedesk.core.importers import otlp
from tracedesk.core.importers.base import (
    RECORD_ERRORS,
    ReadContext,
    TraceFormatError,
    record_problem,
)
from tracedesk.core.model import Run, Step

NAME = "otlp-protobuf"
# Tag bytes of a ResourceSpans field: resource (1), scope_spans (2), schema_url (3).
_RESOURCE_SPANS_FIELDS = (0x0A, 0x12, 0x1A)
_CONTROL_BYTES = frozenset(range(0x09)) | {0x0B, 0x0C} | frozenset(range(0x0E, 0x20))


def sniff(head: bytes) -> float:
    """An ExportTraceServiceRequest starts with field 1 (resource_spans, length-delimited),
    then a varint length, then a ResourceSpans field tag; text never has control bytes."""
    if len(head) < 3 or head[0] != 0x0A:
        return 0.0
    position = 1
    while position < min(len(head), 11) and head[position] & 0x80:
        position += 1
    position += 1
    if position >= len(head) or head[position] not in _RESOURCE_SPANS_FIELDS:
        return 0.0
    return 0.9 if _CONTROL_BYTES.intersection(head[:256]) else 0.0


def decode_request(data: bytes) -> Any:
    """Parse an ExportTraceServiceRequest; raises ValueError when the bytes are not one."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    try:
        return ExportTraceServiceRequest.FromString(data)
    except DecodeError as exc:
        raise ValueError(f"not an OTLP protobuf ExportTraceServiceRequest ({exc})") from None


def read(stream: IO[bytes], ctx: ReadContext) -> Iterator[Run | Step]:
    try:
        request = decode_request(stream.read())
    except ValueError as exc:
        raise TraceFormatError(ctx.path, "message", str(exc)) from None
    yield from request_records(request, ctx)


def request_records(request: Any, ctx: ReadContext) -> Iterator[Run | Step]:
    """The runs and steps of a decoded ExportTraceServiceRequest; a span that cannot be
    mapped is reported to ``ctx`` by its position."""
    for r, resource_spans in enumerate(request.resource_spans, 1):
        resource = attributes(resource_spans.resource.attributes)
        for s, scope_spans in enumerate(resource_spans.scope_spans, 1):
            scope = {"name": scope_spans.scope.name}
            for n, span in enumerate(scope_spans.spans, 1):
                try:
                    yield from otlp._span(span_dict(span), resource, scope)
                except RECORD_ERRORS as exc:
                    ctx.bad(f"resource {r} scope {s} span {n}", record_problem(exc))


def span_dict(span: Any) -> dict[str, Any]:
    """A protobuf Span as an OTLP/JSON span (hex ids, integer enums, flat attributes)."""
    result: dict[str, Any] = {
        "traceId": span.trace_id.hex(),
        "spanId": span.span_id.hex(),
        "parentSpanId": span.parent_span_id.hex(),
        "name": span.name,
        "kind": span.kind,
        "startTimeUnixNano": span.start_time_unix_nano or None,
        "endTimeUnixNano": span.end_time_unix_nano or None,
        "attributes": attributes(span.attributes),
        "status": {"code": span.status.code, "message": span.status.message},
        "events": [
            {
                "name": e.name,
                "timeUnixNano": e.time_unix_nano,
                "attributes": attributes(e.attributes),
            }
            for e in span.events
        ],
    }
    if span.trace_state:
        result["traceState"] = span.trace_state
    if span.flags:
        result["flags"] = span.flags
    if span.dropped_attributes_count:
        result["droppedAttributesCount"] = span.dropped_attributes_count
    return result


def attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in pairs}


def value(any_value: Any) -> Any:
    """An AnyValue as the plain Python value the JSON importer would have decoded."""
    which = any_value.WhichOneof("value")
    if which is None:
        return None
    item = getattr(any_value, which)
    if which == "array_value":
        return [value(v) for v in item.values]
    if which == "kvlist_value":
        return attributes(item.values)
    if which == "bytes_value":
        return item.hex()
    return item
