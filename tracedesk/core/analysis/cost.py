"""Cost per action: the cost of each step, and sums by run, kind, tool, model or agent.

A step's cost is the source's reported cost when it has one; otherwise it is computed
from its tokens and the pricing table (cached input and reasoning at their own prices
where the table has them), or from a per-call tool price. A step with tokens whose model
has no price is *unpriced*: reported by name, never costed at zero. Money is Decimal
throughout, so aggregates add up to the run total exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from tracedesk.core.analysis.pricing import MILLION, ModelPrice, Pricing
from tracedesk.core.model import Run, Step, StepKind
from tracedesk.core.store import Store

PRICING_META_KEY = "pricing_fingerprint"
GROUPINGS = ("run", "kind", "tool", "model", "agent", "step")
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


def apply_costs(store: Store, pricing: Pricing, run_ids: Iterable[str] | None = None) -> None:
    """Price the steps of these runs (all when None) and store step and run costs.

    Call inside a transaction (the importer does); see ``refresh_costs`` otherwise.
    """
    step_rows: list[tuple] = []
    run_rows: list[tuple] = []
    for run_id in store.run_ids() if run_ids is None else run_ids:
        total, priced, unpriced = ZERO, False, 0
        for step in store.iter_steps(run_id, payloads=False):
            cost, source = price_step(step, pricing)
            step_rows.append((cost, source, run_id, step.id))
            if cost is not None:
                total += cost
                priced = True
            unpriced += source == CostSource.UNKNOWN_MODEL
        run_rows.append((total if priced else None, unpriced, run_id))
    store.write_costs(step_rows, run_rows)
    if run_ids is None:
        store.set_meta(PRICING_META_KEY, pricing.fingerprint)


def refresh_costs(store: Store, pricing: Pricing) -> bool:
    """Re-price every run if the pricing changed since it was last applied."""
    if store.get_meta(PRICING_META_KEY) == pricing.fingerprint:
        return False
    with store.transaction():
        apply_costs(store, pricing)
    return True


@dataclass
class CostRow:
    """One group of a cost summary."""

    key: str
    label: str = ""
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    reasoning_tokens: int = 0
    cache_creation_tokens: int = 0
    cost: Decimal = ZERO
    unpriced_steps: int = 0

    def add(self, step: Step, cost: Decimal | None, source: CostSource) -> None:
        self.steps += 1
        self.input_tokens += step.input_tokens or 0
        self.output_tokens += step.output_tokens or 0
        self.cached_input_tokens += step.cached_input_tokens or 0
        self.reasoning_tokens += step.reasoning_tokens or 0
        self.cache_creation_tokens += step.cache_creation_tokens or 0
        if cost is not None:
            self.cost += cost
        self.unpriced_steps += source == CostSource.UNKNOWN_MODEL


@dataclass
class CostSummary:
    by: str
    rows: list[CostRow]
    total: CostRow
    runs: list[Run]
    unknown_models: dict[str, int] = field(default_factory=dict)  # model -> unpriced steps


def _agent_of(steps: Sequence[Step]) -> dict[str, str]:
    """Each step's nearest agent (itself included), by step id."""
    by_id = {s.id: s for s in steps}
    found: dict[str, str] = {}
    for step in steps:
        chain: list[str] = []
        current: Step | None = step
        while current is not None and current.id not in found:
            if current.kind == StepKind.AGENT:
                found[current.id] = current.name
                break
            chain.append(current.id)
            current = by_id.get(current.parent_id) if current.parent_id else None
        agent = found.get(current.id, "(no agent)") if current is not None else "(no agent)"
        for step_id in chain:
            found[step_id] = agent
    return found


def _group(
    by: str, run: Run, step: Step, agents: dict[str, str], pricing: Pricing
) -> tuple[str, str]:
    """(key, label) of the group a step falls in."""
    if by == "run":
        return run.id, run.name
    if by == "kind":
        return str(step.kind), str(step.kind)
    if by == "tool":
        key = step.tool_name if step.kind == StepKind.TOOL and step.tool_name else f"({step.kind})"
        return key, key
    if by == "model":
        price = pricing.resolve(step.model)
        key = price.name if price else (step.model or "(no model)")
        return key, key
    if by == "agent":
        return agents[step.id], agents[step.id]
    return f"{run.id}/{step.id}", f"{run.name} › {step.name}"


def summarize(
    store: Store, pricing: Pricing, run_ids: Iterable[str] | None = None, by: str = "run"
) -> CostSummary:
    """Cost and tokens of the given runs (all when None), grouped ``by`` one of GROUPINGS."""
    return summarize_many(store, pricing, run_ids, (by,))[by]


def summarize_many(
    store: Store, pricing: Pricing, run_ids: Iterable[str] | None, groupings: Sequence[str]
) -> dict[str, CostSummary]:
    """``summarize`` for several groupings, reading each run's steps once."""
    for by in groupings:
        if by not in GROUPINGS:
            raise ValueError(f"cannot group costs by {by!r}; choose one of {', '.join(GROUPINGS)}")
    runs = [store.find_run(r) for r in run_ids] if run_ids is not None else store.runs()
    groups: dict[str, dict[str, CostRow]] = {by: {} for by in groupings}
    total = CostRow(key="total", label="Total")
    unknown: dict[str, int] = defaultdict(int)
    for run in runs:
        steps = store.steps(run.id, payloads=False)
        agents = _agent_of(steps) if "agent" in groupings else {}
        for step in steps:
            cost, source = price_step(step, pricing)
            for by in groupings:
                key, label = _group(by, run, step, agents, pricing)
                row = groups[by].get(key)
                if row is None:
                    row = groups[by][key] = CostRow(key=key, label=label)
                row.add(step, cost, source)
            total.add(step, cost, source)
            if source == CostSource.UNKNOWN_MODEL:
                unknown[step.model or "(no model)"] += 1
    return {
        by: CostSummary(
            by=by,
            rows=sorted(rows.values(), key=lambda r: (-r.cost, -r.steps, r.key)),
            total=total,
            runs=runs,
            unknown_models=dict(unknown),
        )
        for by, rows in groups.items()
    }


def cumulative_cost(steps: Sequence[Step], pricing: Pricing) -> list[tuple[int, Decimal]]:
    """(time ns, cost so far) at the end of each priced step, in time order."""
    points: list[tuple[int, Decimal]] = []
    running = ZERO
    timed = sorted(
        (end, step)
        for step in steps
        if (end := step.end_ns if step.end_ns is not None else step.start_ns) is not None
    )
    for end, step in timed:  # fmt: skip
        cost, _ = price_step(step, pricing)
        if cost:
            running += cost
            points.append((end, running))
    return points
