"""Langfuse exports: ``{trace, observations}`` documents (or a list / JSON Lines of them),
traces with their observations inline, and bare observation records.

Observations become steps. The original OTel attributes that Langfuse keeps in
``metadata.attributes`` are mapped through ``semconv`` to fill what the observation
itself leaves out (tool names, providers, cached tokens …).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Any

from tracedesk.core.importers.base import (
    RECORD_ERRORS,
    Prepend,
    ReadContext,
    TraceFormatError,
    as_cost,
    as_text,
    checked,
    iter_records,
    load_json_document,
    maybe_json,
    parse_time,
    record_problem,
)
from tracedesk.core.importers.semconv import (
    apply_attributes,
    apply_usage_details,
    move_rollup_usage,
)
from tracedesk.core.model import Run, Status, Step, StepKind, request_text

NAME = "langfuse"
TYPES = {
    "GENERATION": StepKind.LLM,
    "EVENT": StepKind.EVENT,
    "AGENT": StepKind.AGENT,
    "TOOL": StepKind.TOOL,
    "CHAIN": StepKind.CHAIN,
    "RETRIEVER": StepKind.RETRIEVER,
    "EVALUATOR": StepKind.EVENT,
    "EMBEDDING": StepKind.EMBEDDING,
    "GUARDRAIL": StepKind.GUARDRAIL,
    "SPAN": StepKind.OTHER,  # refined from the OTel attributes where they say more
}
MAPPED = frozenset({
    "id", "traceId", "parentObservationId", "type", "name", "startTime", "endTime", "model",
    "level", "statusMessage", "input", "output", "metadata", "usageDetails", "usage",
    "costDetails", "totalCost", "calculatedTotalCost",
})  # fmt: skip
TRACE_KEPT = ("userId", "tags", "environment", "release", "version", "scores", "output",
              "metadata", "latency")  # fmt: skip


def sniff(head: bytes) -> float:
    if b'"observations"' in head and (b'"trace"' in head or b'"traceId"' in head):
        return 0.85
    if b'"parentObservationId"' in head:
        return 0.8
    return 0.0


def read(stream: IO[bytes], ctx: ReadContext) -> Iterator[Run | Step]:
    for where, record in iter_records(stream, ctx, streamed_object=_streamed_export):
        if not isinstance(record, dict):
            ctx.bad(where, "expected a JSON object")
            continue
        if isinstance(record.get("data"), list):  # an API page of observations
            items = [(f"{where} data {i + 1}", o) for i, o in enumerate(record["data"])]
            yield from _observations(items, ctx)
            continue
        trace = record.get("trace") if isinstance(record.get("trace"), dict) else None
        if trace is None and "observations" in record:
            trace = record  # a trace with its observations inline
        if trace is not None:
            try:
                run = checked(_trace(trace))
            except RECORD_ERRORS as exc:
                ctx.bad(f"{where} trace", record_problem(exc))
                continue
            yield run
            observations = record.get("observations") or trace.get("observations") or []
            if not isinstance(observations, list):
                ctx.bad(f"{where} observations", "must be a list")
                continue
            items = [(f"{where} observation {i + 1}", o) for i, o in enumerate(observations)]
            yield from _observations(items, ctx, default_trace=run.id)
        elif "traceId" in record:
            yield from _observations([(where, record)], ctx)
        else:
            ctx.bad(where, "neither a trace nor an observation")


STREAM_BATCH = 1000  # observations per record when a big export is read as a stream
_EXPORT_START = re.compile(rb'\s*(\xef\xbb\xbf)?\s*\{\s*"(trace|observations|data)"\s*:')


def _streamed_export(stream: IO[bytes], ctx: ReadContext) -> Iterator[tuple[str, Any]]:
    """A big ``{trace, observations}`` export (or ``{data: [...]}`` page) as records of at
    most STREAM_BATCH observations, so that memory stays bounded by the batch, not the
    file. The trace comes along with each batch once it has been read (the import merges
    the repeats); observations read before it name their trace themselves."""
    import ijson

    head = b""
    while len(head) < 1 << 16 and (more := stream.read((1 << 16) - len(head))):
        head += more
    stream = Prepend(head, stream)  # type: ignore[assignment]
    if not _EXPORT_START.match(head):  # another shape (a trace with inline observations)
        yield "document", load_json_document(stream, ctx)
        return
    trace: dict[str, Any] | None = None
    batch: list[Any] = []
    sent_trace = False
    builder, building, batch_kind, number = None, "", "", 0

    def flush() -> Iterator[tuple[str, Any]]:
        nonlocal batch, sent_trace
        if not batch:
            return
        first = number - len(batch) + 1
        where = f"observations {first}-{number}"
        if batch_kind == "data.item" or trace is None:
            yield where, {"data": batch}
        else:
            yield where, {"trace": trace, "observations": batch}
            sent_trace = True
        batch = []

    try:
        for prefix, event, value in ijson.parse(stream, use_float=True):
            if builder is None:
                if prefix in ("trace", "observations.item", "data.item") and event == "start_map":
                    builder, building = ijson.ObjectBuilder(), prefix
                    builder.event(event, value)
                continue
            builder.event(event, value)
            if prefix == building and event == "end_map":
                if building == "trace":
                    trace = builder.value
                else:
                    number += 1
                    batch_kind = building
                    batch.append(builder.value)
                    if len(batch) == STREAM_BATCH:
                        yield from flush()
                builder = None
    except ijson.JSONError as exc:
        raise TraceFormatError(ctx.path, f"after observation {number}",
                               f"malformed JSON ({exc})") from None  # fmt: skip
    yield from flush()
    if trace is not None and not sent_trace:
        yield "trace", {"trace": trace, "observations": []}


def _payload(value: Any) -> Any:
    """Langfuse often double-encodes payloads as JSON strings: decode up to twice."""
    for _ in range(2):
        decoded = maybe_json(value)
        if decoded is value:
            break
        value = decoded
    return value


def _trace(trace: dict[str, Any]) -> Run:
    trace_input = _payload(trace.get("input"))
    attributes = {
        f"langfuse.{k}": trace[k] for k in TRACE_KEPT if trace.get(k) not in (None, [], {})
    }
    if trace_input is not None:
        attributes["langfuse.input"] = trace_input
    return Run(
        id=str(trace["id"]),
        source_format=NAME,
        name=as_text(trace.get("name"), "name") or "",
        request=request_text(trace_input),
        session_id=as_text(trace.get("sessionId"), "session_id"),
        start_ns=parse_time(trace.get("timestamp")),
        attributes=attributes,
    )


def _observations(
    items: list[tuple[str, Any]], ctx: ReadContext, default_trace: str | None = None
) -> Iterator[Step]:
    for where, observation in items:
        try:
            if not isinstance(observation, dict):
                raise ValueError("expected a JSON object")
            yield checked(_step(observation, default_trace))
        except RECORD_ERRORS as exc:
            ctx.bad(where, record_problem(exc))


def _apply_usage(step: Step, observation: dict[str, Any]) -> None:
    details = observation.get("usageDetails") or observation.get("usage") or {}
    if not isinstance(details, dict):
        return
    details = dict(details)
    for key, legacy in (("input", "promptTokens"), ("output", "completionTokens")):
        if details.get(key) is None and observation.get(legacy) is not None:
            details[key] = observation[legacy]
    apply_usage_details(step, details)
    if details:
        step.attributes["langfuse.usageDetails"] = details


def _apply_cost(step: Step, observation: dict[str, Any]) -> None:
    details = observation.get("costDetails") or {}
    usage = observation.get("usage")
    for value in (
        details.get("total") if isinstance(details, dict) else None,
        observation.get("totalCost"),
        observation.get("calculatedTotalCost"),
        usage.get("totalCost") if isinstance(usage, dict) else None,
    ):
        cost = as_cost(value)
        if cost is not None and (cost or details):
            step.reported_cost = cost
            break
    if details:
        step.attributes["langfuse.costDetails"] = details


def _step(observation: dict[str, Any], default_trace: str | None) -> Step:
    level = observation.get("level") or "DEFAULT"
    kind_name = str(observation.get("type") or "SPAN").upper()
    step = Step(
        id=str(observation["id"]),
        run_id=str(observation.get("traceId") or default_trace or observation["traceId"]),
        parent_id=as_text(observation.get("parentObservationId"), "parent_id") or None,
        kind=TYPES.get(kind_name, StepKind.OTHER),
        name=as_text(observation.get("name"), "name") or "",
        start_ns=parse_time(observation.get("startTime")),
        end_ns=parse_time(observation.get("endTime")),
        status=Status.ERROR if level == "ERROR" else Status.OK,
        error=as_text(observation.get("statusMessage"), "error") if level == "ERROR" else None,
        model=as_text(observation.get("model"), "model"),
        input=_payload(observation.get("input")),
        output=_payload(observation.get("output")),
    )
    _apply_usage(step, observation)
    _apply_cost(step, observation)
    if step.kind == StepKind.LLM and not step.model and not step.input_tokens:
        step.kind = StepKind.CHAIN  # a wrapper such as the AI SDK's ai.streamText, not a call
    step.attributes.update(
        {
            f"langfuse.{k}": v
            for k, v in observation.items()
            if k not in MAPPED and v not in (None, [], {})
        }
    )
    metadata = _payload(observation.get("metadata"))
    if isinstance(metadata, dict):
        otel = metadata.get("attributes")
        if isinstance(otel, dict):
            apply_attributes(step, otel)
        rest = {k: v for k, v in metadata.items() if k != "attributes"}
        if rest:
            step.attributes["langfuse.metadata"] = rest
    elif metadata is not None:
        step.attributes["langfuse.metadata"] = metadata
    if level not in ("DEFAULT", "ERROR"):
        step.attributes["langfuse.level"] = level
        if observation.get("statusMessage"):
            step.attributes["langfuse.statusMessage"] = observation["statusMessage"]
    if step.kind == StepKind.TOOL:
        step.tool_name = step.tool_name or step.name
        if step.tool_args is None:
            step.tool_args = step.input
    move_rollup_usage(step)
    return step
