"""The rows steps, runs and incidents are written as, and a worker's step rows made ready to
bind. Compiled by setup.py: worker processes make a row per step, the importing process
binds them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import fields
from decimal import Decimal
from typing import Any, Final

import orjson

from tracedesk.core.model import (
    CostParts,
    EncodedJSON,
    Incident,
    Run,
    Step,
    from_pusd,
    json_text,
    to_decimal,
    to_pusd,
)
from tracedesk.core.store.schema import PART_COLUMNS, STEP_COLUMNS, STEP_JSON_COLUMNS

# Faster to bind than None (even with db.py's adapter): a NaN, which binds as a number and
# which SQLite stores as NULL. Step rows, the bulk of an import, are bound so (7.0 -> 6.6 us
# a step, the conversion included).
NULL: Final = float("nan")
NO_PARTS = CostParts()
PARTS = len(PART_COLUMNS)  # CostParts' usage types, in the order of PART_COLUMNS


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def step_row(step: Step, import_id: int | None, price_id: object) -> tuple:
    """A step as the values of INSERT_STEP_SQL (the column order of STEP_COLUMNS); a worker
    process's rows carry no import id and the key of their price (``insert_rows``)."""
    return (
        step.run_id, step.id, step.parent_id, step.depth, str(step.kind), step.name,
        step.start_ns, step.end_ns, str(step.status), step.error, step.model, step.provider,
        step.input_tokens, step.output_tokens, step.cached_input_tokens, step.reasoning_tokens,
        step.cache_creation_tokens, step.cache_write_1h_tokens, _text(step.reported_cost),
        step.tool_name, json_text(step.tool_args), json_text(step.input),
        json_text(step.output), json_text(step.attributes or {}), to_pusd(step.cost),
        step.cost_source, *(step.cost_parts or NO_PARTS)[:PARTS], price_id, import_id,
    )  # fmt: skip


_STEP_FIELDS = [
    (i, name) for i, name in enumerate(STEP_COLUMNS) if name in {f.name for f in fields(Step)}
]
_PARTS_AT = STEP_COLUMNS.index(PART_COLUMNS[0])
_PRICE_AT: Final = STEP_COLUMNS.index("price_id")
_IMPORT_AT: Final = STEP_COLUMNS.index("import_id")
_COST_AT, _SOURCE_AT = STEP_COLUMNS.index("cost_pusd"), STEP_COLUMNS.index("cost_source")
_ENCODED_AT = [STEP_COLUMNS.index(name) for name in STEP_JSON_COLUMNS]


def price_key(parts: CostParts | None) -> tuple[str, str, str | None] | None:
    """What names the price a cost used: its source, date and label."""
    if parts is None or parts.source is None:
        return None
    return parts.source, parts.date or "", parts.label


def step_from_row(row: list) -> Step:
    """A step row made with the price's key in place of its id (a worker process's, see
    ``Database.insert_rows``) as the step it was made from."""
    values = {name: row[i] for i, name in _STEP_FIELDS}
    for index in _ENCODED_AT:
        if row[index] is not None:
            values[STEP_COLUMNS[index]] = EncodedJSON(row[index])
    values["reported_cost"] = to_decimal(values["reported_cost"])
    step = Step(**values)
    step.cost, step.cost_source = from_pusd(row[_COST_AT]), row[_SOURCE_AT]
    key = row[_PRICE_AT] or (None, None, None)
    step.cost_parts = CostParts(*row[_PARTS_AT:_PRICE_AT], *key)
    return step


def run_row(run: Run, steps: Iterable[Step], import_id: int | None) -> tuple:
    """A run with its totals as the values of INSERT_RUN_SQL (the order of RUN_COLUMNS)."""
    steps = list(steps)
    models = ",".join(dict.fromkeys(s.model.replace(",", " ") for s in steps if s.model)) or None
    tools = ",".join(dict.fromkeys(s.tool_name.replace(",", " ")
                                   for s in steps if s.tool_name)) or None  # fmt: skip
    return (
        run.id, run.source_format, run.name, run.request, run.session_id, run.start_ns,
        run.end_ns, str(run.status), json_text(run.attributes or {}), run.step_count,
        run.error_count, run.input_tokens, run.output_tokens, run.cached_input_tokens,
        run.reasoning_tokens, run.cache_creation_tokens, run.cache_write_1h_tokens,
        _text(run.reported_cost),
        to_pusd(run.cost), run.unpriced_steps, run.incident_count,
        run.worst_severity, run.wasted_tokens, _text(run.wasted_cost), run.wasted_ns,
        run.wasted_unpriced, models, tools, import_id,
    )  # fmt: skip


def incident_row(i: Incident) -> tuple:
    return (
        i.run_id, i.kind, i.severity, i.message,
        orjson.dumps([[e.kind, e.severity, e.message] for e in i.evidence]).decode(),
        orjson.dumps(i.step_ids).decode(), orjson.dumps(i.wasted_step_ids).decode(),
        i.wasted_tokens, str(i.wasted_cost), i.wasted_ns, i.wasted_unpriced,
    )  # fmt: skip


def with_nulls(rows: Iterable[Iterable[Any]]) -> list[list]:
    """Step rows as INSERT_STEP_SQL binds them fastest: NaN for NULL."""
    return [[NULL if value is None else value for value in row] for row in rows]


def bindable(step_rows: list[list], import_id: int, price_id: Callable[..., Any]) -> list[list]:
    """A worker's step rows (``step_row``, each with its price's key) as INSERT_STEP_SQL
    binds them: with the import id, the price's id, and NaN for NULL, in place (a new list
    per row cost a tenth of the importing process's time, allocated and freed)."""
    for row in step_rows:
        row[_IMPORT_AT] = import_id
        if row[_PRICE_AT] is not None:
            row[_PRICE_AT] = price_id(*row[_PRICE_AT])
        for i, value in enumerate(row):
            if value is None:
                row[i] = NULL
    return step_rows
