"""Cost per action: the cost of each step, and the lines it is made of.

A step's cost is the source's reported cost when it has one; otherwise it is computed
from its tokens and the price in force at its start (``Pricing.resolve``): each usage type
at its own price (uncached input, cache reads, cache writes, output, reasoning, and a
per-request fee where the catalogue has one), at the tier the call's input size falls in;
or it is a per-call tool price. A step with tokens whose model has no price is *unpriced*:
reported by name, never costed at zero. Money is Decimal throughout. Sums over stored runs
are in ``tracedesk.core.summary``.

Token counts follow OTel GenAI and OpenAI: cache reads and writes are inside input,
reasoning inside output. The importers add a source's on-top counts (Anthropic's cache
reads and writes) into input, so both providers' usage is priced the same way here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Context, Decimal
from enum import StrEnum
from typing import NamedTuple

from tracedesk.core.analysis.pricing import MILLION, ModelPrice, Pricing, ToolPrice
from tracedesk.core.model import CostParts, Step, StepKind, from_pusd, to_pusd

ZERO = Decimal(0)
# Usage types in the order a cost detail lists them, with their short names.
USAGE_TYPES = {  # the keys are CostParts' fields
    "input": "in",
    "cache_read": "cache read",
    "cache_write": "cache write",  # 5-minute writes, or writes of an unknown lifetime
    "cache_write_1h": "cache write 1h",
    "output": "out",
    "reasoning": "reasoning",
    "request": "request",
}


class CostSource(StrEnum):
    REPORTED = "reported"  # the trace said what the step cost
    COMPUTED = "computed"  # tokens x the price catalogue (or the user's prices)
    TOOL = "tool"  # a per-call tool price
    UNKNOWN_MODEL = "unknown_model"  # tokens, but no price for the model: flagged
    NONE = "none"  # nothing that costs money


class CostLine(NamedTuple):
    """One usage type of a step's cost: ``quantity`` tokens (or requests) x ``price``. A tuple:
    one is built per usage type of every model call an import prices."""

    usage: str  # a key of USAGE_TYPES
    quantity: int  # tokens, or requests
    price: Decimal  # USD per 1M tokens; USD per call for "request"
    cost: Decimal  # USD

    def text(self) -> str:
        """``1,200 in × $3/M`` (``1 request × $0.01``)."""
        if self.usage == "request":
            return f"{self.quantity:,} request × ${_plain(self.price)}"
        return f"{self.quantity:,} {USAGE_TYPES[self.usage]} × ${_plain(self.price)}/M"


@dataclass(slots=True)
class StepCost:
    """A step's cost, where it comes from, and the lines it is made of."""

    cost: Decimal | None
    source: CostSource
    lines: list[CostLine] = field(default_factory=list)
    price: ModelPrice | None = None  # the model price used (with its source and date)
    tool: ToolPrice | None = None
    model: str | None = None  # the model named by the step (shown when it has no price)
    stored: CostParts | None = None  # what the store keeps, when explained from it

    @property
    def price_source(self) -> str | None:
        """Where the price came from: ``genai-prices 0.2.5: openai/gpt-4o``, the user's
        file, a tool price, or the trace itself."""
        if self.stored is not None:
            return self.stored.source
        if self.source == CostSource.REPORTED:
            return "reported by the source"
        if self.price is not None:
            return (
                f"{self.price.source}: {self.price.label}"
                if self.price.source
                else self.price.label
            )
        if self.tool is not None:
            return f"tool {self.tool.name}" + (f" ({self.tool.source})" if self.tool.source else "")
        return None

    @property
    def price_date(self) -> str | None:
        if self.stored is not None:
            return self.stored.date
        return self.price.as_of if self.price is not None else None

    def text(self) -> str:
        """The whole cost in one line: ``1,200 in × $3/M + 800 cache read × $0.3/M =
        $0.003840``, or why there is none."""
        if self.source == CostSource.REPORTED:
            return f"${_plain(self.cost or ZERO)} reported by the source"
        if self.source == CostSource.UNKNOWN_MODEL:
            return f"no price for model {self.model or '(none)'!r}"
        if self.source == CostSource.TOOL and self.tool is not None:
            return f"1 call of {self.tool.name} × ${_plain(self.tool.per_call)}"
        if self.source == CostSource.NONE:
            return "no cost"
        terms = " + ".join(line.text() for line in self.lines) or "0 tokens"
        return f"{terms} = ${_plain(self.cost or ZERO)}"

    def parts(self) -> CostParts | None:
        """What the store keeps of it: pico-dollars per usage type, the price's source and
        date (a reported or tool cost is its own part: see ``cost_source``)."""
        if self.source in (CostSource.NONE, CostSource.UNKNOWN_MODEL):
            return None
        usage = {line.usage: to_pusd(line.cost) for line in self.lines}
        label = self.price.label if self.price is not None else None
        return CostParts(**usage, source=self.price_source, date=self.price_date, label=label)


def _plain(amount: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: 0.30 -> 0.3, 3E+1 -> 30."""
    text = f"{amount.normalize():f}"
    return text


def cost_lines(step: Step, price: ModelPrice) -> list[CostLine]:
    """The lines of a step's token cost at this price (its tier chosen by the step's input);
    cache reads and writes are taken out of input, reasoning out of output, and 1-hour
    cache writes out of the writes. Types without a price of their own are billed at the
    input (or output) price, and 1-hour writes at the write price, as the catalogue does."""
    input_tokens = step.input_tokens or 0
    price = price.for_input(input_tokens)
    write = price.input if price.cache_write is None else price.cache_write
    rates = (price.input, price.input if price.cached_input is None else price.cached_input,
             write, write if price.cache_write_1h is None else price.cache_write_1h,
             price.output, price.output if price.reasoning is None else price.reasoning)  # fmt: skip
    lines = [CostLine(usage, count, rate, count * rate / MILLION)
             for (usage, count), rate in zip(token_usage(step), rates, strict=True) if count]  # fmt: skip
    if price.per_request and (input_tokens or step.output_tokens):
        lines.append(CostLine("request", 1, price.per_request, price.per_request))
    return lines


def token_usage(step: Step) -> list[tuple[str, int]]:
    """The step's tokens per usage type (the first six of USAGE_TYPES): cache reads and
    writes out of input, reasoning out of output, 1-hour writes out of the writes."""
    input_tokens = step.input_tokens or 0
    output_tokens = step.output_tokens or 0
    cached = min(step.cached_input_tokens or 0, input_tokens)
    written = min(step.cache_creation_tokens or 0, input_tokens - cached)
    hour = min(step.cache_write_1h_tokens or 0, written)
    reasoning = min(step.reasoning_tokens or 0, output_tokens)
    return [("input", input_tokens - cached - written), ("cache_read", cached),
            ("cache_write", written - hour), ("cache_write_1h", hour),
            ("output", output_tokens - reasoning), ("reasoning", reasoning)]  # fmt: skip


RATE_DIGITS = Context(prec=9)  # a rate worked back from a rounded cost, to 9 digits


def explain_stored(step: Step) -> StepCost | None:
    """A stored step's cost explained from what the store keeps of it (``cost_parts``),
    without the price catalogue, so the lines add up to the cost every total uses. None
    for a computed cost stored without its parts (by an older release)."""
    source = CostSource(step.cost_source or CostSource.NONE)
    parts = step.cost_parts
    if source == CostSource.REPORTED:
        cost = step.cost if step.reported_cost is None else step.reported_cost
        return StepCost(cost, source, model=step.model, stored=parts)
    if source == CostSource.TOOL and step.cost is not None:
        tool = ToolPrice(step.tool_name or step.name, step.cost)
        return StepCost(step.cost, source, tool=tool, stored=parts)
    if source != CostSource.COMPUTED:
        return StepCost(None, source, model=step.model)
    if parts is None or all(getattr(parts, usage) is None for usage in USAGE_TYPES):
        return None
    lines = []
    for usage, count in token_usage(step):
        cost = from_pusd(getattr(parts, usage))
        if count and cost is not None:
            lines.append(
                CostLine(usage, count, (cost * MILLION / count).normalize(RATE_DIGITS), cost)
            )
    if parts.request is not None:
        fee = from_pusd(parts.request) or ZERO
        lines.append(CostLine("request", 1, fee, fee))
    return StepCost(step.cost, source, lines, model=step.model, stored=parts)


def token_cost(step: Step, price: ModelPrice) -> Decimal:
    """USD for a step's tokens at this price."""
    return sum((line.cost for line in cost_lines(step, price)), ZERO)


def explain_cost(step: Step, pricing: Pricing) -> StepCost:
    """A step's cost with its lines, price source and date: what the cost detail shows."""
    if step.reported_cost is not None:
        return StepCost(step.reported_cost, CostSource.REPORTED, model=step.model)
    if step.input_tokens or step.output_tokens:
        price = pricing.resolve(step.model, step.provider, step.start_ns)
        if price is None:
            return StepCost(None, CostSource.UNKNOWN_MODEL, model=step.model)
        lines = cost_lines(step, price)
        total = sum((line.cost for line in lines), ZERO)
        return StepCost(total, CostSource.COMPUTED, lines, price, model=step.model)
    if step.kind == StepKind.TOOL:
        tool = pricing.tool(step.tool_name)
        if tool is not None:
            return StepCost(tool.per_call, CostSource.TOOL, tool=tool)
    return StepCost(None, CostSource.NONE, model=step.model)


def price(step: Step, pricing: Pricing) -> None:
    """Set the step's cost, its source and what it is made of (as stored)."""
    if step.reported_cost is None:
        if step.input_tokens or step.output_tokens:
            model_price = pricing.resolve(step.model, step.provider, step.start_ns)
            if model_price is not None and _price_in_pusd(step, model_price):
                return
        elif step.kind != StepKind.TOOL or pricing.tool(step.tool_name) is None:
            step.cost, step.cost_source, step.cost_parts = None, CostSource.NONE, None
            return  # nothing to price: as explain_cost says, in a tenth of the time
    priced = explain_cost(step, pricing)
    step.cost, step.cost_source, step.cost_parts = priced.cost, priced.source, priced.parts()


class _PusdRates(NamedTuple):
    """A price in whole pico-dollars per token (nearly every price is), so that a call's
    cost is integers, as ``cost_lines`` computes it in Decimals."""

    per_token: tuple[int, ...]  # in the order of CostParts' usage fields, request left out
    request: int | None
    source: str | None
    label: str


_rates_of: dict[int, tuple[ModelPrice, _PusdRates | None]] = {}  # by id(ModelPrice)


def _pusd_rates(price: ModelPrice) -> _PusdRates | None:
    """The price's rates in pico-dollars, None if one is not whole (then in Decimals)."""
    known = _rates_of.get(id(price))
    if known is not None and known[0] is price:
        return known[1]
    write = price.input if price.cache_write is None else price.cache_write
    per_token = [price.input, price.input if price.cached_input is None else price.cached_input,
                 write, write if price.cache_write_1h is None else price.cache_write_1h,
                 price.output, price.output if price.reasoning is None else price.reasoning,
                 ]  # fmt: skip
    scaled = [rate * MILLION for rate in per_token]  # USD per 1M tokens: pico-dollars per token
    request = price.per_request.scaleb(12) if price.per_request else None
    rates = None
    if all(r == r.to_integral_value() for r in (*scaled, request or ZERO)):
        source = StepCost(None, CostSource.COMPUTED, price=price).price_source
        rates = _PusdRates(tuple(map(int, scaled)), None if request is None else int(request),
                           source, price.label)  # fmt: skip
    if len(_rates_of) >= 4096:  # it keeps the prices of Pricing objects long gone alive
        _rates_of.clear()
    _rates_of[id(price)] = (price, rates)
    return rates


def _price_in_pusd(step: Step, price: ModelPrice) -> bool:
    """Price a model call in integers when its price allows (the import's common case,
    in a quarter of the time of ``explain_cost``); False when it does not."""
    input_tokens = step.input_tokens or 0
    if price.tiers and price.for_input(input_tokens) is not price:
        return False
    rates = _pusd_rates(price)
    if rates is None:
        return False
    output_tokens = step.output_tokens or 0
    cached, written = step.cached_input_tokens or 0, step.cache_creation_tokens or 0
    hour, reasoning = step.cache_write_1h_tokens or 0, step.reasoning_tokens or 0
    if cached or written or reasoning:  # subsets of input and output, as cost_lines takes them
        cached = min(cached, input_tokens)
        written = min(written, input_tokens - cached)
        hour = min(hour, written)
        reasoning = min(reasoning, output_tokens)
    uncached, five_minutes, answer = (
        input_tokens - cached - written,
        written - hour,
        output_tokens - reasoning,
    )
    rate = rates.per_token
    parts = (uncached * rate[0] if uncached else None, cached * rate[1] if cached else None,
             five_minutes * rate[2] if five_minutes else None, hour * rate[3] if hour else None,
             answer * rate[4] if answer else None, reasoning * rate[5] if reasoning else None,
             rates.request)  # fmt: skip
    total = sum(filter(None, parts))
    step.cost, step.cost_source = from_pusd(total), CostSource.COMPUTED
    step.cost_parts = CostParts(*parts, rates.source, price.as_of, rates.label)
    return True


def price_step(step: Step, pricing: Pricing) -> tuple[Decimal | None, CostSource]:
    """The step's own cost and where it comes from."""
    priced = explain_cost(step, pricing)
    return priced.cost, priced.source
