"""Cost per action: the cost of each step.

A step's cost is the source's reported cost when it has one; otherwise it is computed
from its tokens and the pricing table (cache reads, cache writes and reasoning at their own
prices where the table has them), or from a per-call tool price. A step with tokens whose
model has no price is *unpriced*: reported by name, never costed at zero. Money is
Decimal throughout. Sums over stored runs are in ``tracedesk.core.summary``.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from tracedesk.core.analysis.pricing import MILLION, ModelPrice, Pricing
from tracedesk.core.model import Step, StepKind

ZERO = Decimal(0)


class CostSource(StrEnum):
    REPORTED = "reported"  # the trace said what the step cost
    COMPUTED = "computed"  # tokens x the pricing table
    TOOL = "tool"  # a per-call tool price
    UNKNOWN_MODEL = "unknown_model"  # tokens, but no price for the model: flagged
    NONE = "none"  # nothing that costs money


def token_cost(step: Step, price: ModelPrice) -> Decimal:
    """USD for a step's tokens; cache reads and writes ⊂ input, reasoning ⊂ output."""
    input_tokens = step.input_tokens or 0
    output_tokens = step.output_tokens or 0
    cached = min(step.cached_input_tokens or 0, input_tokens)
    written = min(step.cache_creation_tokens or 0, input_tokens - cached)
    reasoning = min(step.reasoning_tokens or 0, output_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    written_price = price.input if price.cache_write is None else price.cache_write
    reasoning_price = price.output if price.reasoning is None else price.reasoning
    micro = (
        (input_tokens - cached - written) * price.input
        + cached * cached_price
        + written * written_price
        + (output_tokens - reasoning) * price.output
        + reasoning * reasoning_price
    )
    return micro / MILLION


def price_step(step: Step, pricing: Pricing) -> tuple[Decimal | None, CostSource]:
    """The step's own cost and where it comes from."""
    if step.reported_cost is not None:
        return step.reported_cost, CostSource.REPORTED
    if step.input_tokens or step.output_tokens:
        price = pricing.resolve(step.model)
        if price is None:
            return None, CostSource.UNKNOWN_MODEL
        return token_cost(step, price), CostSource.COMPUTED
    if step.kind == StepKind.TOOL:
        tool = pricing.tool(step.tool_name)
        if tool is not None:
            return tool.per_call, CostSource.TOOL
    return None, CostSource.NONE
