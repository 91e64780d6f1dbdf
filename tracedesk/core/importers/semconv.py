"""Span attributes → Step fields, for OpenTelemetry GenAI semantic conventions and OpenInference.

Shared by the OTLP importer and the Langfuse importer (whose observations keep the
original OTel attributes in ``metadata.attributes``). Synonyms are resolved in
precedence order, newest convention first; every attribute not mapped stays in the
step's attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple

from tracedesk.core.importers.base import as_cost, as_int, as_text, maybe_json
from tracedesk.core.model import EncodedJSON, Status, Step, StepKind, json_text

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
    "call_llm": StepKind.LLM,  # Google ADK and any-agent
    "embeddings": StepKind.EMBEDDING,
    "retrieval": StepKind.RETRIEVER,
    "execute_tool": StepKind.TOOL,
    "create_agent": StepKind.AGENT,
    "invoke_agent": StepKind.AGENT,
    "invoke_workflow": StepKind.CHAIN,
}
# The Vercel AI SDK's ai.operationId: the doGenerate/doStream span is the model call; the
# outer generateText/streamText span wraps it (and repeats its usage).
VERCEL_KINDS = {
    "ai.generateText.doGenerate": StepKind.LLM,
    "ai.streamText.doStream": StepKind.LLM,
    "ai.generateObject.doGenerate": StepKind.LLM,
    "ai.streamObject.doStream": StepKind.LLM,
    "ai.embed.doEmbed": StepKind.EMBEDDING,
    "ai.embedMany.doEmbed": StepKind.EMBEDDING,
    "ai.toolCall": StepKind.TOOL,
}
LANGFUSE_KINDS = {
    "generation": StepKind.LLM,
    "embedding": StepKind.EMBEDDING,
    "agent": StepKind.AGENT,
    "tool": StepKind.TOOL,
    "chain": StepKind.CHAIN,
    "retriever": StepKind.RETRIEVER,
    "guardrail": StepKind.GUARDRAIL,
    "evaluator": StepKind.EVENT,
    "event": StepKind.EVENT,
}
# Monocle's span.type, longest prefix first. "inference.modelapi" is the raw client call
# inside an "inference.framework" span, which carries the model and the tokens.
MONOCLE_KINDS = (
    ("inference.modelapi", StepKind.OTHER),
    ("inference", StepKind.LLM),
    ("agentic.tool.invocation", StepKind.TOOL),
    ("agentic.delegation", StepKind.HANDOFF),
    ("agentic.invocation", StepKind.AGENT),
    ("agentic.request", StepKind.CHAIN),
    ("agentic.turn", StepKind.CHAIN),
    ("workflow", StepKind.CHAIN),
    ("retrieval", StepKind.RETRIEVER),
    ("embedding", StepKind.EMBEDDING),
)

MODEL_KEYS = ("gen_ai.response.model", "gen_ai.request.model", "llm.response.model_name",
              "llm.model_name", "llm.request.model_name", "langfuse.observation.model.name",
              "ai.response.model", "ai.model.id")  # fmt: skip
PROVIDER_KEYS = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system",
                 "ai.model.provider")  # fmt: skip
INPUT_TOKEN_KEYS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                    "llm.token_count.prompt", "ai.usage.inputTokens", "ai.usage.promptTokens",
                    "ai.usage.tokens")  # fmt: skip
OUTPUT_TOKEN_KEYS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                     "llm.token_count.completion", "ai.usage.outputTokens",
                     "ai.usage.completionTokens")  # fmt: skip
CACHED_TOKEN_KEYS = ("gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cached_tokens",
                     "gen_ai.usage.cache_read_tokens", "gen_ai.usage.cache_read_input_tokens",
                     "llm.token_count.prompt_details.cache_read",
                     "ai.usage.cachedInputTokens")  # fmt: skip
CACHE_CREATION_KEYS = ("gen_ai.usage.cache_creation.input_tokens",
                       "gen_ai.usage.cache_creation_input_tokens",
                       "llm.token_count.prompt_details.cache_write")  # fmt: skip
REASONING_TOKEN_KEYS = ("gen_ai.usage.reasoning.output_tokens",
                        "llm.token_count.completion_details.reasoning",
                        "ai.usage.reasoningTokens")  # fmt: skip
COST_KEYS = ("llm.cost.total",)
TOOL_NAME_KEYS = ("gen_ai.tool.name", "tool.name", "ai.toolCall.name")
TOOL_ARGS_KEYS = ("gen_ai.tool.call.arguments", "tool_arguments", "tool.parameters",
                  "gen_ai.tool.args", "ai.toolCall.args")  # fmt: skip
TOOL_RESULT_KEYS = ("gen_ai.tool.call.result", "tool_response", "ai.toolCall.result")
INPUT_KEYS = ("gen_ai.input.messages", "input.value", "gen_ai.prompt",
              "langfuse.observation.input", "ai.prompt.messages", "ai.prompt")  # fmt: skip
OUTPUT_KEYS = ("gen_ai.output.messages", "output.value", "gen_ai.completion", "gen_ai.output",
               "langfuse.observation.output", "ai.response.text", "ai.response.object",
               "ai.response.toolCalls")  # fmt: skip
SESSION_KEYS = ("gen_ai.conversation.id", "session.id", "langfuse.session.id")
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens",
                "cache_creation_tokens")  # fmt: skip
SYNONYMS = {
    "model": MODEL_KEYS, "provider": PROVIDER_KEYS, "input_tokens": INPUT_TOKEN_KEYS,
    "output_tokens": OUTPUT_TOKEN_KEYS, "cached_input_tokens": CACHED_TOKEN_KEYS,
    "cache_creation_tokens": CACHE_CREATION_KEYS,
    "reasoning_tokens": REASONING_TOKEN_KEYS, "reported_cost": COST_KEYS,
    "tool_name": TOOL_NAME_KEYS, "tool_args": TOOL_ARGS_KEYS, "input": INPUT_KEYS,
    "output": OUTPUT_KEYS, "tool_result": TOOL_RESULT_KEYS,
}  # fmt: skip


def _text(value: Any) -> Any:
    return value if isinstance(value, str) else None


def _payload(value: Any) -> Any:
    """``maybe_json``, kept as the JSON text the store holds: what is decoded only to be
    stored is not kept alive as objects until its run is written."""
    found = maybe_json(value)
    return value if found is value else EncodedJSON(json_text(found))


CONVERT = {
    "model": _text, "provider": _text, "tool_name": _text,
    "input_tokens": as_int, "output_tokens": as_int, "cached_input_tokens": as_int,
    "reasoning_tokens": as_int, "cache_creation_tokens": as_int, "reported_cost": as_cost,
    "tool_args": _payload, "input": _payload, "output": _payload, "tool_result": _payload,
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
    try:  # well-formed pairs, most of them strings: in a fifth less time
        return {
            p["key"]: v["stringValue"] if "stringValue" in (v := p["value"]) else otel_value(v)
            for p in pairs
        }
    except (KeyError, TypeError):  # a pair without key or value, or not an object
        pass
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
    langfuse_type = attrs.get("langfuse.observation.type")
    if isinstance(langfuse_type, str):
        return LANGFUSE_KINDS.get(langfuse_type.lower(), StepKind.OTHER)
    vercel = attrs.get("ai.operationId")
    if isinstance(vercel, str):
        return VERCEL_KINDS.get(vercel, StepKind.CHAIN)
    monocle = attrs.get("span.type")
    if isinstance(monocle, str):
        return next((k for prefix, k in MONOCLE_KINDS if monocle.startswith(prefix)), None)
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
    keys = tuple(attrs)
    plan = _plans.get(keys) or _plan(keys)
    rest = dict(attrs)
    for target, convert, candidates in plan.fields:
        for key in candidates:  # the first synonym with a value
            value = attrs[key]
            if value is None or value == "":
                continue
            del rest[key]
            value = convert(value)
            if value is not None and getattr(step, target) is None:
                setattr(step, target, value)
            # Which key the token counts came from, unless it is the current GenAI one:
            # noted on every model call, that took 50 bytes each.
            if target == "input_tokens" and key != INPUT_TOKEN_KEYS[0]:
                rest["tracedesk.token_source"] = key
            break
    if plan.dialects:
        _apply_dialects(step, attrs)
    if step.kind == StepKind.TOOL:
        if step.tool_name is None:
            step.tool_name = step.name
        if step.tool_args is None:
            step.tool_args = step.input
    step.attributes.update(rest)
    session = _first(attrs, plan.sessions) if plan.sessions else None
    return session if isinstance(session, str) else None


class _Plan(NamedTuple):
    """What ``apply_attributes`` looks at in attributes with given keys (spans of one kind
    carry the same keys, so it is worked out once for them)."""

    # Each field as (the step's field it fills, its conversion, its synonyms present, the
    # best first), in SYNONYMS order: a tool result fills the output only when no output
    # attribute did, so it goes last.
    fields: tuple[tuple[str, Callable[[Any], Any], tuple[str, ...]], ...]
    dialects: bool  # whether ``_apply_dialects`` has anything to read
    sessions: tuple[str, ...]  # the session keys present


_plans: dict[tuple[str, ...], _Plan] = {}
MAX_PLANS = 4096  # key sets remembered; a source that makes up keys as it goes stays bounded


def _plan(keys: tuple[str, ...]) -> _Plan:
    present = set(keys)
    fields = []
    for field, synonyms in SYNONYMS.items():
        found = tuple(key for key in synonyms if key in present)
        if found:
            fields.append(("output" if field == "tool_result" else field, CONVERT[field], found))
    plan = _Plan(
        tuple(fields),
        not present.isdisjoint(DIALECT_KEYS),
        tuple(key for key in SESSION_KEYS if key in present),
    )
    if len(_plans) >= MAX_PLANS:
        _plans.clear()
    _plans[keys] = plan
    return plan


# The keys whose presence sends attributes to ``_apply_dialects`` (keep the two in step).
DIALECT_KEYS = ("span.type", "gen_ai.usage.input_cost", "gen_ai.usage.output_cost",
                "langfuse.observation.type")  # fmt: skip


def _apply_dialects(step: Step, attrs: dict[str, Any]) -> None:
    """What the vocabularies that are not 1:1 synonyms say: Monocle's numbered entities,
    any-agent's split costs, the Langfuse SDK's usage and cost objects and levels."""
    if "span.type" in attrs:
        _apply_monocle_entities(step, attrs)
    if "gen_ai.usage.input_cost" in attrs or "gen_ai.usage.output_cost" in attrs:
        costs = [as_cost(attrs.get(k)) for k in ("gen_ai.usage.input_cost",
                                                 "gen_ai.usage.output_cost")]  # fmt: skip
        if step.reported_cost is None and any(c is not None for c in costs):
            step.reported_cost = sum((c for c in costs if c is not None), Decimal(0))
    if "langfuse.observation.type" in attrs:
        usage = maybe_json(attrs.get("langfuse.observation.usage_details"))
        if isinstance(usage, dict) and step.input_tokens is None and step.output_tokens is None:
            apply_usage_details(step, usage)
        details = maybe_json(attrs.get("langfuse.observation.cost_details"))
        if isinstance(details, dict) and step.reported_cost is None:
            step.reported_cost = as_cost(details.get("total"))
        if attrs.get("langfuse.observation.level") == "ERROR":
            step.status = Status.ERROR
            message = as_text(attrs.get("langfuse.observation.status_message"), "error")
            step.error = step.error or message or "ERROR"


CACHED_DETAIL_KEYS = ("input_cached_tokens", "cache_read_input_tokens", "input_cache_read",
                      "prompt_details.cache_read", "cached_tokens")  # fmt: skip
CACHE_CREATION_DETAIL_KEYS = ("input_cache_creation", "cache_creation_input_tokens",
                              "input_cache_creation_tokens", "prompt_details.cache_write",
                              "cache_creation")  # fmt: skip
# Cache writes by lifetime, as Langfuse's LangChain handler (langfuse 5.0.4,
# ``_parse_usage_model``) flattens Anthropic's ``usage.cache_creation`` split into
# usage_details: from the raw Anthropic usage, ``cache_creation_ephemeral_{5m,1h}_input_tokens``;
# from langchain-anthropic's usage_metadata, ``input_ephemeral_{5m,1h}_input_tokens`` (with
# ``input_cache_creation`` 0, which langchain-anthropic writes once it has the split). The
# OTel GenAI conventions have no such split (only ``gen_ai.usage.cache_creation.input_tokens``).
WRITE_5M_DETAIL_KEYS = ("cache_creation_ephemeral_5m_input_tokens",
                        "input_ephemeral_5m_input_tokens")  # fmt: skip
WRITE_1H_DETAIL_KEYS = ("cache_creation_ephemeral_1h_input_tokens",
                        "input_ephemeral_1h_input_tokens")  # fmt: skip
REASONING_DETAIL_KEYS = ("output_reasoning_tokens", "completion_details.reasoning",
                         "output_reasoning", "reasoning_tokens")  # fmt: skip


def _first_count(values: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        if values.get(key) is not None:
            return as_int(values[key])
    return None


def apply_usage_details(step: Step, details: dict[str, Any]) -> None:
    """Tokens from a Langfuse ``usage_details`` object, or a provider's own usage object.

    Producers differ on whether cache reads, cache writes and reasoning are inside the
    input and output counts. OpenAI's own usage (``prompt_tokens``) counts them inside.
    Langfuse's convention (``input``, ``input_cache_read`` …) and Anthropic's own usage
    (``input_tokens``, ``cache_read_input_tokens`` …) count them on top, unless a ``total``
    equal to input + output says they are inside. tracedesk counts them as subsets.
    """
    if "prompt_tokens" in details and "input" not in details:
        prompt = details.get("prompt_tokens_details") or {}
        completion = details.get("completion_tokens_details") or {}
        step.input_tokens = as_int(details["prompt_tokens"])
        step.output_tokens = as_int(details.get("completion_tokens"))
        step.cached_input_tokens = as_int(prompt.get("cached_tokens"))
        step.reasoning_tokens = as_int(completion.get("reasoning_tokens"))
        return
    input_tokens = as_int(details.get("input", details.get("input_tokens")))
    output_tokens = as_int(details.get("output", details.get("output_tokens")))
    cached = _first_count(details, CACHED_DETAIL_KEYS)
    written = _first_count(details, CACHE_CREATION_DETAIL_KEYS)
    five, hour = (_first_count(details, WRITE_5M_DETAIL_KEYS),
                  _first_count(details, WRITE_1H_DETAIL_KEYS))  # fmt: skip
    if five is not None or hour is not None:  # writes split by lifetime: 1-hour ones known
        written = written or (five or 0) + (hour or 0)
        step.cache_write_1h_tokens = hour or 0
    reasoning = _first_count(details, REASONING_DETAIL_KEYS)
    total = as_int(details.get("total"))
    cache = (cached or 0) + (written or 0)
    if cache + (reasoning or 0) and total != (input_tokens or 0) + (output_tokens or 0):
        input_tokens = (input_tokens or 0) + cache
        output_tokens = (output_tokens or 0) + (reasoning or 0)
    step.input_tokens, step.output_tokens = input_tokens, output_tokens
    step.cached_input_tokens, step.reasoning_tokens = cached, reasoning
    step.cache_creation_tokens = written


def _apply_monocle_entities(step: Step, attrs: dict[str, Any]) -> None:
    """``entity.N.type``/``entity.N.name``: ``model.*`` names the model, ``inference.*`` the
    provider, ``tool.*`` the tool; a tool or agent step is named after its entity."""
    for n in range(1, 10):
        kind, name = attrs.get(f"entity.{n}.type"), attrs.get(f"entity.{n}.name")
        if not isinstance(kind, str):
            continue
        if kind.startswith("model.") and step.model is None and isinstance(name, str):
            step.model = name
        elif kind.startswith("inference.") and step.provider is None:
            step.provider = kind.removeprefix("inference.")
        elif kind.startswith("tool.") and step.kind == StepKind.TOOL and isinstance(name, str):
            step.tool_name = step.tool_name or name
    entity = attrs.get("entity.1.name")
    if step.kind in (StepKind.TOOL, StepKind.AGENT) and isinstance(entity, str) and entity:
        step.attributes["otel.span_name"] = step.name
        step.name = entity


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
