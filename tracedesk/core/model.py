"""The domain model: a Run (one agent run, one trace) made of Steps (one span each).

Plain slotted dataclasses so that importers can create them by the million.
Times are integer nanoseconds since the Unix epoch; money is a Decimal in USD.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, NamedTuple

import orjson
from mypy_extensions import mypyc_attr


class StepKind(StrEnum):
    AGENT = "agent"
    LLM = "llm"
    TOOL = "tool"
    HANDOFF = "handoff"
    GUARDRAIL = "guardrail"
    RETRIEVER = "retriever"
    EMBEDDING = "embedding"
    CHAIN = "chain"
    EVENT = "event"
    OTHER = "other"


class Status(StrEnum):
    OK = "ok"
    ERROR = "error"
    UNSET = "unset"


@mypyc_attr(native_class=False)  # compiled (setup.py), a str subclass stays a Python class
class EncodedJSON(str):
    """A value already encoded as JSON text. A step read in another process carries its
    payloads and attributes so: they are stored as they are, and what looks inside one
    decodes it (``decoded``)."""


def decoded(value: Any) -> Any:
    """The value itself, decoding EncodedJSON."""
    return orjson.loads(str(value)) if type(value) is EncodedJSON else value


def json_text(value: Any) -> str | None:
    """A value as the JSON text the database stores."""
    if value is None:
        return None
    if type(value) is EncodedJSON:
        return str(value)
    try:  # keys are text nearly always: checked for only when one is not (a third faster)
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        pass
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # integers beyond 64 bits or nesting beyond 255 levels
        try:
            return json.dumps(value, default=str, ensure_ascii=False)
        except RecursionError:
            raise ValueError("a value is nested too deeply to store") from None


PUSD = Decimal(10**12)  # pico-dollars in a dollar


def from_pusd(pusd: int | None) -> Decimal | None:
    """A stored cost (integer pico-dollars) as USD."""
    return None if pusd is None else Decimal(pusd) / PUSD


def to_pusd(amount: Decimal | None) -> int | None:
    """USD as integer pico-dollars, the stored form of every cost."""
    return None if amount is None else int(amount.scaleb(12).to_integral_value())


class CostParts(NamedTuple):
    """What a step's cost is made of: pico-dollars per usage type (None where the type is
    not part of it), and the price used: where it came from and the date it took effect."""

    input: int | None = None
    cache_read: int | None = None
    cache_write: int | None = None  # 5-minute writes, or writes of an unknown lifetime
    cache_write_1h: int | None = None  # 1-hour writes, where the source says which
    output: int | None = None
    reasoning: int | None = None
    request: int | None = None  # a per-request fee
    source: str | None = None
    date: str | None = None
    label: str | None = None  # the model price's name with its provider: openai/gpt-4o


USAGE_PARTS = CostParts._fields[:7]


@dataclass(slots=True)
class Step:
    """One span of a run: a model call, a tool call, an agent turn, a handoff …"""

    id: str
    run_id: str
    parent_id: str | None = None
    kind: str = StepKind.OTHER
    name: str = ""
    start_ns: int | None = None
    end_ns: int | None = None
    status: str = Status.UNSET
    error: str | None = None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    # Subsets, as OTel GenAI and OpenAI count them: cache reads and cache writes of input,
    # reasoning of output. Importers add a source's on-top counts (Anthropic's) into input.
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_creation_tokens: int | None = None
    # Of the cache writes, those for Anthropic's 1-hour cache (billed higher than 5-minute
    # ones); None where the source does not split writes by lifetime.
    cache_write_1h_tokens: int | None = None
    reported_cost: Decimal | None = None
    tool_name: str | None = None
    tool_args: Any = None
    input: Any = None
    output: Any = None
    # A dict; in the importing process, a worker's step holds it as the JSON text it is
    # stored as (EncodedJSON).
    attributes: Any = field(default_factory=dict)
    depth: int = 0  # derived by the store at import time
    # Derived by the cost engine: the step's own cost and where it came from.
    cost: Decimal | None = None
    cost_source: str | None = None
    # What the cost is made of (set by pricing, written to the store, not read back).
    cost_parts: CostParts | None = None

    # The fields again, in order: compiled (setup.py), the __init__ dataclass would write is
    # plain Python setting each field by name, a twentieth of a worker's time; this one is
    # compiled. A test checks that both say the same.
    def __init__(
        self, id: str, run_id: str, parent_id: str | None = None, kind: str = StepKind.OTHER,
        name: str = "", start_ns: int | None = None, end_ns: int | None = None,
        status: str = Status.UNSET, error: str | None = None, model: str | None = None,
        provider: str | None = None, input_tokens: int | None = None,
        output_tokens: int | None = None, cached_input_tokens: int | None = None,
        reasoning_tokens: int | None = None, cache_creation_tokens: int | None = None,
        cache_write_1h_tokens: int | None = None, reported_cost: Decimal | None = None,
        tool_name: str | None = None, tool_args: Any = None, input: Any = None,
        output: Any = None, attributes: Any = None, depth: int = 0, cost: Decimal | None = None,
        cost_source: str | None = None, cost_parts: CostParts | None = None,
    ) -> None:  # fmt: skip
        self.id = id
        self.run_id = run_id
        self.parent_id = parent_id
        self.kind = kind
        self.name = name
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.status = status
        self.error = error
        self.model = model
        self.provider = provider
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.cached_input_tokens = cached_input_tokens
        self.reasoning_tokens = reasoning_tokens
        self.cache_creation_tokens = cache_creation_tokens
        self.cache_write_1h_tokens = cache_write_1h_tokens
        self.reported_cost = reported_cost
        self.tool_name = tool_name
        self.tool_args = tool_args
        self.input = input
        self.output = output
        self.attributes = {} if attributes is None else attributes
        self.depth = depth
        self.cost = cost
        self.cost_source = cost_source
        self.cost_parts = cost_parts

    @property
    def duration_ns(self) -> int | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return self.end_ns - self.start_ns


@dataclass(slots=True)
class Run:
    """One agent run (one trace). Totals are derived from its steps by the store."""

    id: str
    source_format: str = ""
    name: str = ""
    request: str | None = None
    session_id: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None
    status: str = Status.UNSET
    attributes: dict[str, Any] = field(default_factory=dict)
    # Derived totals, filled when read back from the store.
    step_count: int = 0
    error_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reported_cost: Decimal | None = None
    cost: Decimal | None = None  # reported or computed, summed over the steps
    unpriced_steps: int = 0  # steps with tokens whose model has no price
    incident_count: int = 0  # loop / retry incidents
    worst_severity: str | None = None
    # Spent in the incidents' wasted steps, each step counted once.
    wasted_tokens: int = 0
    wasted_cost: Decimal | None = None
    wasted_ns: int = 0
    wasted_unpriced: int = 0
    models: list[str] = field(default_factory=list)  # the models and tools it used
    tools: list[str] = field(default_factory=list)

    @property
    def duration_ns(self) -> int | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return self.end_ns - self.start_ns


RUN_DERIVED_FIELDS = (
    "step_count",
    "error_count",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cache_creation_tokens",
    "cache_write_1h_tokens",
    "reported_cost",
    "cost",
    "unpriced_steps",
    "incident_count",
    "worst_severity",
    "wasted_tokens",
    "wasted_cost",
    "wasted_ns",
    "wasted_unpriced",
    "models",
    "tools",
)


def to_decimal(value: Any) -> Decimal | None:
    """A money amount as reported by a source (number or numeric string) as a Decimal."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    # str() of a float gives its shortest round-tripping form, so 0.1 stays 0.1.
    return Decimal(str(value))


_REQUEST_KEYS = ("messages", "new_message", "input", "question", "query", "prompt", "request")


def request_text(payload: Any, _depth: int = 0) -> str | None:
    """The user's words in a step's input: the last user message of a chat, or the text.

    Understands OpenAI / Anthropic chat messages, OTel GenAI ``parts`` messages, Google
    ``parts`` and JSON-encoded strings of any of them. Used to group runs by request.
    """
    if _depth > 6 or payload is None:
        return None
    text: str | None
    if isinstance(payload, str):
        text = payload.strip()
        if text[:1] in ("{", "[", '"'):
            try:
                return request_text(orjson.loads(text), _depth + 1)
            except ValueError:
                pass
        return text or None
    if isinstance(payload, list):
        users = [m for m in payload if isinstance(m, dict) and m.get("role") in ("user", "human")]
        for message in reversed(users):
            text = _message_text(message)
            if text:
                return text
        if payload and all(isinstance(m, str) for m in payload):
            return "\n".join(payload)
        return None
    if isinstance(payload, dict):
        if payload.get("role") in ("user", "human"):
            return _message_text(payload)
        for key in _REQUEST_KEYS:
            if key in payload:
                text = request_text(payload[key], _depth + 1)
                if text:
                    return text
    return None


def _message_text(message: dict[str, Any]) -> str | None:
    content = message.get("content", message.get("parts"))
    if isinstance(content, str):
        return content.strip() or None
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                text = part.get("text", part.get("content"))
                if isinstance(text, str):
                    texts.append(text)
        return "\n".join(texts).strip() or None
    return None


SEVERITIES = ("info", "warning", "error")  # weakest first


def severity_rank(severity: str | None) -> int:
    """0 for info … 2 for error; -1 for no severity at all."""
    return SEVERITIES.index(severity) if severity in SEVERITIES else -1


@dataclass(slots=True)
class Evidence:
    """One detector's observation inside an incident."""

    kind: str  # the detector: retry_storm, repeated_error, oscillation, no_progress, runaway
    severity: str
    message: str


@dataclass(slots=True)
class Incident:
    """Where a run stopped making progress: the findings of every detector that saw the same
    steps, merged. ``findings[0]`` is the headline (the strongest); the rest are evidence.

    Waste is what the repeats cost after the first attempt, each step counted once per run:
    the wasted steps of two incidents of one run never overlap.
    """

    run_id: str
    findings: list[Evidence]
    step_ids: list[str]  # the steps involved, in start order
    wasted_step_ids: list[str]
    wasted_tokens: int = 0
    wasted_cost: Decimal = Decimal(0)
    wasted_ns: int = 0  # time covered by the wasted steps (overlaps counted once)
    wasted_unpriced: int = 0  # wasted steps with tokens but no price: left out of the cost

    @property
    def kind(self) -> str:
        return self.findings[0].kind

    @property
    def severity(self) -> str:
        return self.findings[0].severity

    @property
    def message(self) -> str:
        return self.findings[0].message

    @property
    def evidence(self) -> list[Evidence]:
        return self.findings[1:]

    @property
    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    @property
    def first_step(self) -> str | None:
        return self.step_ids[0] if self.step_ids else None

    @property
    def last_step(self) -> str | None:
        return self.step_ids[-1] if self.step_ids else None


MAX_LISTED_WARNINGS = 200  # per import; the count of all warnings is always kept


@dataclass
class ImportResult:
    """What one import did: counts, and its warnings (the first MAX_LISTED_WARNINGS)."""

    path: str
    format: str
    import_id: int | None = None
    runs: int = 0
    steps: int = 0
    skipped: int = 0
    bad_records: int = 0
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    already_imported: bool = False

    def warn(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_LISTED_WARNINGS:
            self.warnings.append(message)
