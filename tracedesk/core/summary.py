"""Cost summaries of stored runs: the stored step costs and tokens summed by SQL, grouped
by run, kind, tool, model, agent or step. Money is Decimal, so every grouping adds up to
the total exactly."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import groupby

from tracedesk.core.analysis.cost import CostSource
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.model import StepKind
from tracedesk.core.store import Store
from tracedesk.core.store.queries import (
    COST_GROUP_KEYS,
    COST_PARTS,
    CostGroup,
    CostStep,
    Waste,
    from_pusd,
)

GROUPINGS = ("run", "kind", "tool", "model", "agent", "step")
_FIRST_PART, _PRICE_IDS = (
    CostGroup._fields.index("input_pusd"),
    CostGroup._fields.index("price_ids"),
)
ZERO = Decimal(0)
NO_AGENT = "(no agent)"


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
    cache_write_1h_tokens: int = 0
    cost: Decimal = ZERO
    unpriced_steps: int = 0
    ns: int = 0  # the time its steps took, summed (grouped by SQL only)
    # Filled by summaries made with detail: the cost by part (COST_PARTS), the prices'
    # sources and dates, and the cost of the steps that loop incidents wasted.
    parts: dict[str, Decimal] = field(default_factory=dict)
    price_sources: set[str] = field(default_factory=set)
    price_dates: set[str] = field(default_factory=set)
    wasted_cost: Decimal = ZERO

    def add_detail(self, group: CostGroup, prices: dict[int, tuple[str, str, str | None]]) -> None:
        """The group's cost parts and the sources and dates of its prices."""
        for part, pusd in zip(COST_PARTS, group[_FIRST_PART:_PRICE_IDS], strict=True):
            if pusd is not None:
                self.parts[part] = self.parts.get(part, ZERO) + (from_pusd(int(pusd)) or ZERO)
        for price_id in filter(None, (group.price_ids or "").split(",")):
            source, date, _label = prices[int(price_id)]
            self.price_sources.add(source)
            if date:
                self.price_dates.add(date)

    def add(self, group: CostGroup) -> None:
        self.steps += group.steps
        self.input_tokens += group.input_tokens
        self.output_tokens += group.output_tokens
        self.cached_input_tokens += group.cached_input_tokens
        self.reasoning_tokens += group.reasoning_tokens
        self.cache_creation_tokens += group.cache_creation_tokens
        self.cache_write_1h_tokens += group.cache_write_1h_tokens
        self.cost += from_pusd(group.cost_pusd) or ZERO
        self.unpriced_steps += group.unpriced_steps
        self.ns += group.ns or 0


@dataclass
class CostSummary:
    by: str
    rows: list[CostRow]
    total: CostRow
    runs: dict[str, str]  # id -> name of the runs summed, in start order
    waste: Waste  # what their loop incidents wasted
    unknown_models: dict[str, int] = field(default_factory=dict)  # model -> unpriced steps


def _step_group(key: str, step: CostStep) -> CostGroup:
    """One step as a group of its own."""
    unpriced = int(step.cost_source == CostSource.UNKNOWN_MODEL)
    return CostGroup(key, 1, *step[5:12], unpriced, *step.parts)


def _agent_groups(steps: Iterable[CostStep]) -> list[CostGroup]:
    """Stored costs summed by each step's nearest agent (itself included), run by run."""
    sums: dict[str, list] = {}
    for step, agent in _agents(steps):
        values = _step_group(agent, step)
        known = sums.get(agent)
        if known is None:
            sums[agent] = list(values)
        else:  # sums, and price id texts joined (None: nothing of that part yet)
            for n, value in enumerate(values[1:], start=1):
                if value is not None:
                    known[n] = value if known[n] is None else known[n] + value
    return [CostGroup(*values) for values in sums.values()]


def _agents(steps: Iterable[CostStep]) -> Iterator[tuple[CostStep, str]]:
    """Each step (ordered by run) with the name of its nearest agent (itself included)."""
    for _, run_steps in groupby(steps, key=lambda s: s.run_id):
        listed = list(run_steps)
        by_id = {s.id: s for s in listed}
        agent_of: dict[str, str] = {}
        for step in listed:
            chain: list[str] = []
            current: CostStep | None = step
            while current is not None and current.id not in agent_of:
                if current.kind == StepKind.AGENT:
                    agent_of[current.id] = current.name
                    break
                chain.append(current.id)
                current = by_id.get(current.parent_id) if current.parent_id else None
            agent = agent_of.get(current.id, NO_AGENT) if current is not None else NO_AGENT
            for step_id in chain:
                agent_of[step_id] = agent
            yield step, agent_of[step.id]


def summarize(
    store: Store,
    pricing: Pricing,
    run_ids: Iterable[str] | None = None,
    by: str = "run",
    detail: bool = True,
) -> CostSummary:
    """Cost and tokens of the given runs (all when None), grouped ``by`` one of GROUPINGS,
    with (``detail``) each row's cost by part, price sources and dates, and wasted cost."""
    return summarize_many(store, pricing, run_ids, (by,), detail=detail)[by]


def summarize_many(
    store: Store,
    pricing: Pricing,
    run_ids: Iterable[str] | None,
    groupings: Sequence[str],
    detail: bool = False,
) -> dict[str, CostSummary]:
    """``summarize`` for several groupings: sums of the stored step costs, made by SQL.
    With ``detail``, one more pass over the steps fills each row's cost parts, price
    sources and dates and wasted cost (the charts need none of it).

    Costs are as last priced: call ``refresh_costs`` first when the prices may have changed.
    """
    for by in groupings:
        if by not in GROUPINGS:
            raise ValueError(f"cannot group costs by {by!r}; choose one of {', '.join(GROUPINGS)}")
    ids = None
    if run_ids is not None:  # whole ids as they are, prefixes resolved (one query each)
        known = set(store.run_ids())
        ids = [r if r in known else store.find_run(r).id for r in run_ids]
        if len(ids) == len(known) and set(ids) == known:
            ids = None  # every run: no filter for SQL to apply to each step
    names = store.run_names(ids)
    waste = store.waste(ids)
    model_keys: dict[str, str] = {}

    def model_key(model: str) -> str:
        if model not in model_keys:
            price = pricing.resolve(None if model == "(no model)" else model)
            model_keys[model] = price.label if price else model
        return model_keys[model]

    in_sql = [by for by in groupings if by in COST_GROUP_KEYS]
    sql_groups = store.cost_groups(in_sql, ids, parts=detail) if in_sql else {}
    unpriced: list[dict[str, int]] = []

    def unknown_models() -> dict[str, int]:
        """Models without a price and their steps: from the model groups when there are
        some, else one query for every grouping."""
        if not unpriced:
            unpriced.append(
                {g.key: g.unpriced_steps for g in sql_groups["model"] if g.unpriced_steps}
                if "model" in sql_groups
                else store.unpriced_models(ids)
            )
        return unpriced[0]

    prices = store.prices() if detail or "model" in groupings else {}
    for group in sql_groups.get("model", []):
        # The label of the price its steps were priced with, as stored: no need to load
        # the catalogue (0.2 s) unless a model's steps name no model price or several.
        labels = {prices[int(i)][2] for i in (group.price_ids or "").split(",") if i} - {None}
        label = labels.pop() if len(labels) == 1 else None  # reported costs have none
        if label is not None:
            model_keys[group.key] = label
    wasted = _wasted_costs(store, ids, groupings) if detail else {}
    summaries = {}
    for by in groupings:
        step_names: dict[str, str] = {}
        if by == "agent":
            groups = _agent_groups(store.cost_steps(ids))
        elif by == "step":
            groups = []
            for step in store.cost_steps(ids):
                key = f"{step.run_id}/{step.id}"
                step_names[key] = f"{names.get(step.run_id, step.run_id)} › {step.name}"
                groups.append(_step_group(key, step))
        else:
            groups = sql_groups[by]
        rows: dict[str, CostRow] = {}
        total = CostRow(key="total", label="Total")
        for group in groups:
            key, label = group.key, group.key
            if by == "model":  # model names group under the price they resolve to
                key = label = model_key(key)
            elif by == "run":
                label = names.get(key, key)
            elif by == "step":
                label = step_names[key]
            row = rows.setdefault(key, CostRow(key=key, label=label))
            row.add(group)
            total.add(group)
            if detail:
                row.add_detail(group, prices)
                total.add_detail(group, prices)
        for key, pusd in wasted.get(by, {}).items():
            key = model_key(key) if by == "model" else key
            if key in rows:
                rows[key].wasted_cost += from_pusd(pusd) or ZERO
                total.wasted_cost += from_pusd(pusd) or ZERO
        summaries[by] = CostSummary(
            by=by,
            rows=sorted(rows.values(), key=lambda r: (-r.cost, -r.steps, r.key)),
            total=total,
            runs=names,
            waste=waste,
            unknown_models=unknown_models(),
        )
    return summaries


def _wasted_costs(
    store: Store, ids: list[str] | None, groupings: Sequence[str]
) -> dict[str, dict[str, int]]:
    """The cost loop incidents wasted, per group (pico-dollars): by SQL where the grouping
    is a column, else from the steps."""
    in_sql = [by for by in groupings if by in COST_GROUP_KEYS]
    sums = store.wasted_costs(in_sql, ids) if in_sql else {}
    if "agent" in groupings or "step" in groupings:
        wasted = store.wasted_steps(ids)
        sums["agent"], sums["step"] = {}, {}
        for step, agent in _agents(store.cost_steps(ids)):
            if (step.run_id, step.id) in wasted and step.cost_pusd:
                for by, key in (("agent", agent), ("step", f"{step.run_id}/{step.id}")):
                    sums[by][key] = sums[by].get(key, 0) + step.cost_pusd
    return sums
