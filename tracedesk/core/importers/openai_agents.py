"""OpenAI Agents SDK traces: the ``trace`` and ``trace.span`` objects of ``export()``.

As JSON Lines (what a custom processor writes), the ``{"data": [...]}`` body the SDK's
backend exporter posts, or a JSON array. Spans are exported when they end, so children
come before parents; the store builds the tree afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from tracedesk.core.importers.base import (
    RECORD_ERRORS,
    ReadContext,
    as_int,
    as_text,
    checked,
    iter_records,
    maybe_json,
    parse_time,
    record_problem,
)
from tracedesk.core.model import Run, Status, Step, StepKind

NAME = "openai-agents"
SPAN_TYPES = {
    "agent": StepKind.AGENT,
    "generation": StepKind.LLM,
    "response": StepKind.LLM,
    "function": StepKind.TOOL,
    "handoff": StepKind.HANDOFF,
    "guardrail": StepKind.GUARDRAIL,
    "custom": StepKind.OTHER,
    "mcp_tools": StepKind.OTHER,
    "transcription": StepKind.LLM,
    "speech": StepKind.LLM,
    "speech_group": StepKind.OTHER,
}


def sniff(head: bytes) -> float:
    compact = head.replace(b" ", b"")
    if b'"object":"trace.span"' in compact or b'"object":"trace"' in compact:
        return 0.95
    return 0.0


def read(stream: IO[bytes], ctx: ReadContext) -> Iterator[Run | Step]:
    for where, record in iter_records(stream, ctx):
        items = [(where, record)]
        if isinstance(record, dict) and isinstance(record.get("data"), list):
            items = [(f"{where} data {i + 1}", item) for i, item in enumerate(record["data"])]
        for item_where, item in items:
            try:
                if not isinstance(item, dict):
                    raise ValueError("expected a JSON object")
                kind = item.get("object")
                if kind == "trace":
                    yield checked(_trace(item))
                elif kind == "trace.span":
                    yield checked(_span(item))
                else:
                    raise ValueError(f"'object' must be 'trace' or 'trace.span', not {kind!r}")
            except RECORD_ERRORS as exc:
                ctx.bad(item_where, record_problem(exc))


def _trace(trace: dict[str, Any]) -> Run:
    attributes = {k: trace[k] for k in ("metadata", "group_id") if trace.get(k) is not None}
    return Run(
        id=str(trace["id"]),
        source_format=NAME,
        name=as_text(trace.get("workflow_name"), "name") or "",
        session_id=as_text(trace.get("group_id"), "session_id"),
        attributes=attributes,
    )


def _span(span: dict[str, Any]) -> Step:
    data = span.get("span_data") or {}
    if not isinstance(data, dict):
        raise ValueError("'span_data' must be an object")
    span_type = data.get("type", "custom")
    error = span.get("error")
    step = Step(
        id=str(span["id"]),
        run_id=str(span["trace_id"]),
        parent_id=as_text(span.get("parent_id"), "parent_id") or None,
        kind=SPAN_TYPES.get(span_type, StepKind.OTHER),
        name=str(data.get("name") or span_type),
        start_ns=parse_time(span.get("started_at")),
        end_ns=parse_time(span.get("ended_at")),
        status=Status.ERROR if error else Status.OK if span.get("ended_at") else Status.UNSET,
    )
    if error:
        step.error = _error_text(error)
        if isinstance(error, dict):
            step.attributes["error.message"] = error.get("message")
            if error.get("data") is not None:
                step.attributes["error.data"] = error["data"]
    if span.get("metadata"):
        step.attributes["metadata"] = span["metadata"]
    mapped = {"type", "name", "input", "output", "usage", "model"}
    if span_type == "generation":
        step.model = as_text(data.get("model"), "model")
        step.name = f"generation {step.model}" if step.model else "generation"
        step.input, step.output = data.get("input"), data.get("output")
        _usage(step, data.get("usage"))
    elif span_type == "response":
        step.name = "response"
        _usage(step, data.get("usage"))
    elif span_type == "function":
        step.tool_name = step.name
        step.tool_args = step.input = maybe_json(data.get("input"))
        step.output = maybe_json(data.get("output"))
    elif span_type == "handoff":
        step.name = f"{data.get('from_agent') or '?'} -> {data.get('to_agent') or '?'}"
    elif span_type == "guardrail":
        step.output = {"triggered": data.get("triggered")}
    elif span_type == "mcp_tools":
        step.name = f"mcp_tools {data.get('server') or ''}".strip()
    elif span_type == "custom":
        # SDK 0.14+ task/turn spans carry the usage of the model calls below them.
        custom = data.get("data")
        if isinstance(custom, dict) and custom.get("usage") is not None:
            step.attributes["tracedesk.rollup_usage"] = custom["usage"]
    step.attributes.update({f"span_data.{k}": v for k, v in data.items() if k not in mapped})
    return step


def _error_text(error: Any) -> str:
    """The most specific text: a tool failure's ``message`` is always the SDK's generic
    "Error running tool (non-fatal)", and what went wrong is in ``data.error``."""
    if not isinstance(error, dict):
        return str(error)
    data = error.get("data")
    if isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"].strip():
        return data["error"]
    return as_text(error.get("message"), "error") or "error"


def _usage(step: Step, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    step.input_tokens = as_int(usage.get("input_tokens"))
    step.output_tokens = as_int(usage.get("output_tokens"))
    details = usage.get("input_tokens_details") or usage.get("details") or {}
    step.cached_input_tokens = as_int(details.get("cached_tokens"))
    step.reasoning_tokens = as_int(
        (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    )
    extras = {k: v for k, v in usage.items() if k not in ("input_tokens", "output_tokens")}
    if extras:
        step.attributes["usage"] = extras
