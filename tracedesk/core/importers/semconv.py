"""Span attributes → Step fields, for OpenTelemetry GenAI semantic conventions and OpenInference.

Shared by the OTLP importer and the Langfuse importer (whose observations keep the
original OTel attributes in ``metadata.attributes``). Synonyms are resolved in
precedence order, newest convention first; every attribute not mapped stays in the
step's attributes.
"""

from __future__ import annotations

from typing import Any

from tracedesk.core.importers.base import as_cost, as_int, maybe_json
from tracedesk.core.model import Step, StepKind

OPENINFERENCE_KINDS = {
    "LLM": StepKind.LLM,
    "EMBEDDING": StepKind.EMBEDDING,
    "CHAIN": StepKind.CHAIN,
    "RETRIEVER": StepKind.RETRIEVER,
    "RERANKER": StepKind.RETRIEVER,
    "TOOL": StepKind.TOOL,
    "AGENT": StepKind.AGENT,
    "GUARDRAIL": StepKind.GUARDRAIL,
    "EVALUATOR": StepKind.EVENT,
    "PROMPT": StepKind.CHAIN,
}
GENAI_OPERATION_KINDS = {
    "chat": StepKind.LLM,
    "text_completion": StepKind.LLM,
    "generate_content": StepKind.LLM,
    "embeddings": StepKind.EMBEDDING,
    "retrieval": StepKind.RETRIEVER,
    "execute_tool": StepKind.TOOL,
    "create_agent": StepKind.AGENT,
    "invoke_agent": StepKind.AGENT,
    "invoke_workflow": StepKind.CHAIN,
}

MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.response.model_name",
              "llm.model_name", "llm.request.model_name")  # fmt: skip
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                    "llm.token_count.prompt")  # fmt: skip
OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                     "llm.token_count.completion")  # fmt: skip
CACHED_TOKEN_KEYS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cached_tokens",
                     "gen_ai.usage.cache_read_tokens",
                     "llm.token_count.prompt_details.cache_read")  # fmt: skip
REASONING_TOKEN_KEYS = ("gen_ai.usage.reasoning.output_tokens",
                        "llm.token_count.completion_details.reasoning")  # fmt: skip
COST_KEYS = ("llm.cost.total",)
TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name")
TOOL_ARGS_KEYS = ("gen_ai.tool.call.arguments", "tool_arguments", "tool.parameters")
TOOL_RESULT_KEYS = ("gen_ai.tool.call.result", "tool_response")
INPUT_KEYS = ("gen_ai.input.messages", "input.value", "gen_ai.prompt")
OUTPUT_KEYS = ("gen_ai.output.messages", "output.value", "gen_ai.completion")
SESSION_KEYS = ("gen_ai.conversation.id", "session.id")
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")
SYNONYMS = {
    "model": MODEL_KEYS, "provider": PROVIDER_KEYS, "input_tokens": INPUT_TOKEN_KEYS,
    "output_tokens": OUTPUT_TOKEN_KEYS, "cached_input_tokens": CACHED_TOKEN_KEYS,
    "reasoning_tokens": REASONING_TOKEN_KEYS, "reported_cost": COST_KEYS,
    "tool_name": TOOL_NAME_KEYS, "tool_args": TOOL_ARGS_KEYS, "input": INPUT_KEYS,
    "output": OUTPUT_KEYS, "tool_result": TOOL_RESULT_KEYS,
}  # fmt: skip
FIELD_OF_KEY = {key: (field, rank) for field, keys in SYNONYMS.items()
                for rank, key in enumerate(keys)}  # fmt: skip


def _text(value: Any) -> Any:
    return value if isinstance(value, str) else None


CONVERT = {
    "model": _text, "provider": _text, "tool_name": _text,
    "input_tokens": as_int, "output_tokens": as_int, "cached_input_tokens": as_int,
    "reasoning_tokens": as_int, "reported_cost": as_cost,
    "tool_args": maybe_json, "input": maybe_json, "output": maybe_json, "tool_result": maybe_json,
}  # fmt: skip
# Containers whose usage, when a source reports it, is the sum of their children's.
ROLLUP_KINDS = frozenset({StepKind.AGENT, StepKind.CHAIN})


def otel_value(value: Any) -> Any:
    """Decode an OTLP/JSON AnyValue."""
    if not isinstance(value, dict):
        return value
    if "stringValue" in value:  # by far the most common: take it first
        return value["stringValue"]
    for key, item in value.items():
        if key == "arrayValue":
            return [otel_value(v) for v in (item or {}).get("values", [])]
        if key == "kvlistValue":
            return otel_attributes((item or {}).get("values", []))
        if key == "intValue":
            return as_int(item)
        return item  # stringValue, boolValue, doubleValue, bytesValue (base64 text)
    return None


def otel_attributes(pairs: Any) -> dict[str, Any]:
    """``[{key, value: AnyValue}]`` → a flat dict; a dict is taken as already flat."""
    if isinstance(pairs, dict):
        return dict(pairs)
    if not isinstance(pairs, list):
        return {}
    return {
        p["key"]: otel_value(p.get("value")) for p in pairs if isinstance(p, dict) and "key" in p
    }


def _first(attrs: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None and value != "":
            return value
    return None


def kind_from_attributes(attrs: dict[str, Any]) -> StepKind | None:
    oi_kind = attrs.get("openinference.span.kind")
    if isinstance(oi_kind, str) and oi_kind.upper() in OPENINFERENCE_KINDS:
        return OPENINFERENCE_KINDS[oi_kind.upper()]
    operation = attrs.get("gen_ai.operation.name")
    if operation in GENAI_OPERATION_KINDS:
        return GENAI_OPERATION_KINDS[operation]
    if attrs.get("gen_ai.tool.name") or attrs.get("tool.name"):
        return StepKind.TOOL
    if attrs.get("gen_ai.agent.name") or attrs.get("agent.name"):
        return StepKind.AGENT
    if _first(attrs, MODEL_KEYS) is not None:
        return StepKind.LLM
    return None


def apply_attributes(step: Step, attrs: dict[str, Any]) -> str | None:
    """Fill the step from GenAI / OpenInference attributes; keep the rest on the step.

    Fields already set on the step (by the container format) win. Of several synonyms the
    first in precedence order is used; the others stay in the attributes. Returns the
    session id if the attributes name one.
    """
    kind = kind_from_attributes(attrs)
    if kind is not None and step.kind == StepKind.OTHER:
        step.kind = kind
    chosen: dict[str, tuple[int, str, Any]] = {}  # field -> (precedence, key, value)
    for key, value in attrs.items():
        spec = FIELD_OF_KEY.get(key)
        if spec is None or value is None or value == "":
            continue
        field, rank = spec
        if field not in chosen or rank < chosen[field][0]:
            chosen[field] = (rank, key, value)
    rest = dict(attrs)
    # A tool result fills the output only when no output attribute did: it goes last.
    for field in sorted(chosen, key=lambda f: f == "tool_result"):
        _, key, value = chosen[field]
        del rest[key]
        value = CONVERT[field](value)
        target = "output" if field == "tool_result" else field
        if value is not None and getattr(step, target) is None:
            setattr(step, target, value)
    if "input_tokens" in chosen:
        rest["tracedesk.token_source"] = chosen["input_tokens"][1]
    if step.kind == StepKind.TOOL:
        if step.tool_name is None:
            step.tool_name = step.name
        if step.tool_args is None:
            step.tool_args = step.input
    step.attributes.update(rest)
    session = _first(attrs, SESSION_KEYS)
    return session if isinstance(session, str) else None


def move_rollup_usage(step: Step) -> None:
    """Usage on agent/chain steps sums their children's: keep it aside, never count it twice."""
    if step.kind not in ROLLUP_KINDS:
        return
    rollup = {name: getattr(step, name) for name in TOKEN_FIELDS if getattr(step, name) is not None}
    if step.reported_cost is not None:
        rollup["reported_cost"] = str(step.reported_cost)
        step.reported_cost = None
    for name in TOKEN_FIELDS:
        setattr(step, name, None)
    if rollup:
        step.attributes["tracedesk.rollup_usage"] = rollup
