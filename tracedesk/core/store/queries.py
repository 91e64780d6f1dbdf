"""Typed reads: every query the GUI and the CLI run, returning model dataclasses."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import NamedTuple

import orjson

from tracedesk.core.collector import collector_paused
from tracedesk.core.model import (
    PUSD,
    USAGE_PARTS,
    CostParts,
    Evidence,
    Incident,
    Run,
    Step,
    from_pusd,
    to_decimal,
)
from tracedesk.core.search import Node, SearchSQL, compile_query, parse
from tracedesk.core.store.schema import (
    INDEXED_META_KEY,
    PART_COLUMNS,
    PAYLOAD_COLUMNS,
    READ_STEP_COLUMNS,
    STEP_JSON_COLUMNS,
)

FEW_MATCHES = 20_000  # matching steps a runs search collects before it goes run by run
SCANNED_MATCHES = 1_000  # the same, when they are found by a scan of steps
# The steps of given runs, by the primary key: with a filter on kind, SQLite would take
# the index of rare kinds instead and read every agent step of the database for each run.
STEPS_OF_RUNS = "steps AS s INDEXED BY sqlite_autoindex_steps_1"


class Preview(str):
    """The start of a stored payload's JSON text, too long to read whole at once."""


def _row_to_step(row: sqlite3.Row, skip: Iterable[str] = ()) -> Step:
    keys = row.keys()
    values = {k: row[k] for k in keys if k in Step.__dataclass_fields__}
    for name in (STEP_JSON_COLUMNS & values.keys()) - set(skip):
        if values[name] is not None:
            values[name] = orjson.loads(values[name])
    if values.get("attributes") is None:
        values["attributes"] = {}
    values["reported_cost"] = to_decimal(values.get("reported_cost"))
    values["cost"] = from_pusd(row["cost_pusd"]) if "cost_pusd" in keys else None
    return Step(**values)


# Every Run field, in field order, as the runs table stores it (cost as pico-dollars), so
# that a row builds a Run positionally: the library reads 20k of them at once.
_SELECT_RUN = "SELECT " + ", ".join(
    "cost_pusd" if f.name == "cost" else f.name for f in fields(Run)
) + " FROM runs"  # fmt: skip
_RUN_FIELDS = [f.name for f in fields(Run)]


_RUN_ATTRIBUTES, _RUN_COST = _RUN_FIELDS.index("attributes"), _RUN_FIELDS.index("cost")
_RUN_DECIMALS = [_RUN_FIELDS.index(name) for name in ("reported_cost", "wasted_cost")]


def _run(row: tuple) -> Run:
    """A row of _SELECT_RUN as a Run."""
    values = list(row)
    attributes: str = row[_RUN_ATTRIBUTES]
    values[_RUN_ATTRIBUTES] = orjson.loads(attributes) if attributes and attributes != "{}" else {}
    values[_RUN_COST] = from_pusd(row[_RUN_COST])
    for index in _RUN_DECIMALS:
        values[index] = to_decimal(row[index])
    models, tools = row[-2:]
    values[-2:] = models.split(",") if models else [], tools.split(",") if tools else []
    return Run(*values)


def _row_to_incident(row: sqlite3.Row) -> Incident:
    headline = Evidence(row["kind"], row["severity"], row["message"])
    return Incident(
        run_id=row["run_id"],
        findings=[headline, *(Evidence(*e) for e in orjson.loads(row["evidence"]))],
        step_ids=orjson.loads(row["step_ids"]),
        wasted_step_ids=orjson.loads(row["wasted_step_ids"]),
        wasted_tokens=row["wasted_tokens"],
        wasted_cost=Decimal(row["wasted_cost"]),
        wasted_ns=row["wasted_ns"],
        wasted_unpriced=row["wasted_unpriced"],
    )


# The group key of each cost grouping that SQL can compute ("agent" needs the tree).
COST_GROUP_KEYS = {
    "run": "run_id",
    "kind": "kind",
    "tool": "CASE WHEN kind = 'tool' AND tool_name IS NOT NULL THEN tool_name"
    " ELSE '(' || kind || ')' END",
    "model": "coalesce(model, '(no model)')",
}


def _only(run_ids: list[str] | None, column: str = "run_id") -> tuple[str, tuple]:
    """A WHERE clause (and its parameter) keeping the rows of these runs; none for None."""
    if run_ids is None:
        return "", ()
    return f" WHERE {column} IN (SELECT value FROM json_each(?))", (orjson.dumps(run_ids).decode(),)


class Waste(NamedTuple):
    """Spent in loop incidents, each wasted step counted once."""

    incidents: int
    tokens: int
    cost: Decimal
    ns: int
    unpriced: int


class CostGroup(NamedTuple):
    """Steps, tokens and cost of one group of a cost summary, summed by SQL."""

    key: str
    steps: int
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cache_creation_tokens: int
    cache_write_1h_tokens: int
    cost_pusd: int | None
    unpriced_steps: int
    # What the cost is made of (COST_PARTS), pico-dollars (None unless asked for), and the
    # prices used as ",id,id," (several such texts joined still split into the ids): every
    # one with the parts, else the first and last, enough for a model's label.
    input_pusd: int | None = None
    cache_read_pusd: int | None = None
    cache_write_pusd: int | None = None
    cache_write_1h_pusd: int | None = None
    output_pusd: int | None = None
    reasoning_pusd: int | None = None
    request_pusd: int | None = None
    reported_pusd: int | None = None
    tool_pusd: int | None = None
    price_ids: str | None = None
    ns: int | None = None  # the time its steps took, summed (steps with both times)


# The parts of a cost, as CostGroup and exports list them: the usage types of a computed
# cost, then a reported and a per-call tool cost.
COST_PARTS = (*USAGE_PARTS, "reported", "tool")


class CostStep(NamedTuple):
    """What a cost summary needs of one step (grouping by agent walks the tree)."""

    run_id: str
    id: str
    parent_id: str | None
    kind: str
    name: str
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cache_creation_tokens: int
    cache_write_1h_tokens: int
    cost_pusd: int | None
    cost_source: str | None
    tool_key: str  # the step's keys in COST_GROUP_KEYS
    model_key: str
    parts: tuple  # CostGroup's values from ``input_pusd`` on, for this one step


_COST_SUMS = (
    "count(*), coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0),"
    " coalesce(sum(cached_input_tokens), 0), coalesce(sum(reasoning_tokens), 0),"
    " coalesce(sum(cache_creation_tokens), 0), coalesce(sum(cache_write_1h_tokens), 0),"
    " sum(cost_pusd),"
    " count(*) FILTER (WHERE cost_source = 'unknown_model')"
)
# What the costs are made of: only summed for the summaries that show it.
_PART_SUMS = (
    ", ".join(f"sum({c})" for c in PART_COLUMNS)
    + ", sum(cost_pusd) FILTER (WHERE cost_source = 'reported'),"
    " sum(cost_pusd) FILTER (WHERE cost_source = 'tool')"
)
_NO_PART_SUMS = ", ".join(["NULL"] * (len(PART_COLUMNS) + 2))
_PRICE_IDS = "',' || group_concat(DISTINCT price_id) || ','"
_TIME_SUM = "sum(end_ns - start_ns) FILTER (WHERE end_ns >= start_ns)"
# Enough to name the price of a model's steps, much cheaper than every distinct id.
_FIRST_AND_LAST_PRICE = "',' || min(price_id) || ',' || max(price_id) || ','"
# A step's own parts, in the order of those sums.
_STEP_PARTS = (
    ", ".join(PART_COLUMNS) + ", CASE cost_source WHEN 'reported' THEN cost_pusd END,"
    " CASE cost_source WHEN 'tool' THEN cost_pusd END, ',' || price_id || ','"
)


@dataclass(frozen=True, slots=True)
class StepMatch:
    """A step found by a search, with its run's name."""

    run_id: str
    run_name: str
    step_id: str
    kind: str
    name: str
    status: str
    model: str | None
    tool_name: str | None
    cost_pusd: int | None
    start_ns: int | None
    end_ns: int | None

    @property
    def cost(self) -> Decimal | None:
        return from_pusd(self.cost_pusd)

    @property
    def duration_ns(self) -> int | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return self.end_ns - self.start_ns


@dataclass(frozen=True, slots=True)
class SearchIndexState:
    """Whether the full-text index is on, and how many steps it is still missing."""

    on: bool
    pending: int


@dataclass(frozen=True, slots=True)
class Session:
    """The runs of one conversation (session, thread, group), totalled."""

    id: str
    runs: int
    steps: int
    errors: int
    first_ns: int | None
    last_ns: int | None
    cost_pusd: int | None
    incidents: int
    wasted_tokens: int

    @property
    def cost(self) -> Decimal | None:
        return from_pusd(self.cost_pusd)


_SELECT_MATCH = (
    "SELECT s.run_id, coalesce(r.name, ''), s.id, s.kind, s.name, s.status, s.model,"
    " s.tool_name, s.cost_pusd, s.start_ns, s.end_ns"
)
SESSION_SUMS = (
    "SELECT session_id, count(*), sum(step_count), sum(error_count), min(start_ns),"
    " max(coalesce(end_ns, start_ns)), sum(cost_pusd), sum(incident_count),"
    " sum(wasted_tokens) FROM runs"
)


class Queries:
    """The read side of a Store (mixed into it): needs only ``self.conn``."""

    conn: sqlite3.Connection

    def find_import(self, sha256: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM imports WHERE sha256 = ? ORDER BY id LIMIT 1", (sha256,)
        ).fetchone()

    def run_ids_from_file(self, path: str) -> list[str]:
        """The runs a file brought in (first brought in, when several files hold a run)."""
        rows = self.conn.execute(
            "SELECT runs.id FROM runs JOIN imports ON imports.id = runs.import_id"
            " WHERE imports.path = ? ORDER BY runs.start_ns",
            (path,),
        )
        return [row[0] for row in rows]

    def incidents(self, run_id: str | None = None) -> list[Incident]:
        """Stored incidents of one run, or of all runs, in order."""
        sql = "SELECT * FROM incidents"
        if run_id is None:
            rows = self.conn.execute(sql + " ORDER BY run_id, id")
        else:
            rows = self.conn.execute(sql + " WHERE run_id=? ORDER BY id", (run_id,))
        return [_row_to_incident(r) for r in rows]

    def cost_groups(
        self, bys: Sequence[str], run_ids: list[str] | None = None, parts: bool = True
    ) -> dict[str, list[CostGroup]]:
        """Stored step costs and tokens summed per group, for each grouping (keys of
        COST_GROUP_KEYS), in one pass of SQL over the steps: the charts want three."""
        where, params = _only(run_ids)
        keys = ", ".join(COST_GROUP_KEYS[by] for by in bys)
        numbers = ", ".join(str(n) for n in range(1, len(bys) + 1))
        part_sums = _PART_SUMS if parts else _NO_PART_SUMS
        price_ids = _PRICE_IDS if parts else _FIRST_AND_LAST_PRICE if "model" in bys else "NULL"
        sql = (f"SELECT {keys}, {_COST_SUMS}, {part_sums}, {price_ids}, {_TIME_SUM}"
               f" FROM steps{where} GROUP BY {numbers}")  # fmt: skip
        cursor = self.conn.cursor()
        cursor.row_factory = None
        sums: list[dict[str, list]] = [{} for _ in bys]
        for row in cursor.execute(sql, params):
            values = row[len(bys) :]
            for position, key in enumerate(row[: len(bys)]):
                known = sums[position].get(key)
                if known is None:
                    sums[position][key] = list(values)
                else:  # the same group again, under another combination of the other keys
                    for n, value in enumerate(values):  # sums, and price id texts joined
                        if value is not None:
                            known[n] = value if known[n] is None else known[n] + value
        return {by: [CostGroup(key, *v) for key, v in sums[n].items()]
                for n, by in enumerate(bys)}  # fmt: skip

    def unpriced_models(self, run_ids: list[str] | None = None) -> dict[str, int]:
        """Models without a price, with how many steps used them."""
        where, params = _only(run_ids)
        sql = (f"SELECT coalesce(model, '(no model)'), count(*) FROM steps{where}"
               f" {'AND' if where else 'WHERE'} cost_source = 'unknown_model' GROUP BY 1")  # fmt: skip
        return {model: count for model, count in self.conn.execute(sql, params)}

    def cost_steps(self, run_ids: list[str] | None = None) -> Iterator[CostStep]:
        """Every step of these runs (all when None) with its tokens and stored cost."""
        sql = (
            "SELECT run_id, id, parent_id, kind, name, coalesce(input_tokens, 0),"
            " coalesce(output_tokens, 0), coalesce(cached_input_tokens, 0),"
            " coalesce(reasoning_tokens, 0), coalesce(cache_creation_tokens, 0),"
            " coalesce(cache_write_1h_tokens, 0), cost_pusd,"
            f" cost_source, {COST_GROUP_KEYS['tool']}, {COST_GROUP_KEYS['model']}, {_STEP_PARTS}"
            " FROM steps"
        )
        where, params = _only(run_ids)
        cursor = self.conn.cursor()
        cursor.row_factory = None
        for row in cursor.execute(sql + where + " ORDER BY run_id", params):
            yield CostStep._make((*row[:15], row[15:]))

    def wasted_costs(self, bys: Sequence[str], run_ids: list[str] | None = None
                     ) -> dict[str, dict[str, int]]:  # fmt: skip
        """The stored cost of the steps loop incidents wasted, summed per group of each
        grouping (keys of COST_GROUP_KEYS): few steps, each found by its key."""
        where, params = _only(run_ids, "i.run_id")
        keys = ", ".join(COST_GROUP_KEYS[by] for by in bys)
        numbers = ", ".join(str(n) for n in range(1, len(bys) + 1))
        sql = (
            "WITH wasted(w_run, w_id) AS (SELECT DISTINCT i.run_id, j.value FROM incidents AS i,"
            f" json_each(i.wasted_step_ids) AS j{where})"
            f" SELECT {keys}, sum(cost_pusd) FROM wasted JOIN steps"
            f" ON run_id = w_run AND id = w_id GROUP BY {numbers}"
        )
        sums: dict[str, dict[str, int]] = {by: {} for by in bys}
        for row in self.conn.execute(sql, params):
            for by, key in zip(bys, row[: len(bys)], strict=True):
                sums[by][key] = sums[by].get(key, 0) + (row[-1] or 0)
        return sums

    def prices(self) -> dict[int, tuple[str, str, str | None]]:
        """Every price a stored cost used: id -> (source, date or '', model price label)."""
        return {id_: (source, date, label) for id_, source, date, label in
                self.conn.execute("SELECT id, source, date, label FROM prices")}  # fmt: skip

    def wasted_steps(self, run_ids: list[str] | None = None) -> set[tuple[str, str]]:
        """(run id, step id) of every step an incident of these runs wasted."""
        where, params = _only(run_ids, "i.run_id")
        sql = ("SELECT DISTINCT i.run_id, j.value FROM incidents AS i,"
               f" json_each(i.wasted_step_ids) AS j{where}")  # fmt: skip
        return {(run_id, step_id) for run_id, step_id in self.conn.execute(sql, params)}

    def run_names(self, run_ids: list[str] | None = None) -> dict[str, str]:
        """Run id -> name, in start order."""
        where, params = _only(run_ids, "id")
        sql = f"SELECT id, name FROM runs{where} ORDER BY start_ns, id"
        return dict(self.conn.execute(sql, params).fetchall())

    def waste(self, run_ids: list[str] | None = None) -> Waste:
        """What the loop incidents of these runs (all when None) wasted."""
        sql = ("SELECT sum(incident_count), sum(wasted_tokens), sum(wasted_ns),"
               " sum(wasted_unpriced),"
               " json_group_array(wasted_cost) FILTER (WHERE wasted_cost IS NOT NULL) FROM runs")  # fmt: skip
        where, params = _only(run_ids, "id")
        incidents, tokens, ns, unpriced, costs = self.conn.execute(sql + where, params).fetchone()
        cost = sum((Decimal(c) for c in orjson.loads(costs or "[]")), Decimal(0))
        return Waste(incidents or 0, tokens or 0, cost, ns or 0, unpriced or 0)

    def has_run(self, run_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is not None

    def step_ids(self, run_id: str) -> set[str]:
        """The ids of a run's stored steps (from the primary key alone)."""
        return {r[0] for r in self.conn.execute("SELECT id FROM steps WHERE run_id=?", (run_id,))}

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM runs ORDER BY start_ns, id")]

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def runs(self, order_by: str = "start_ns DESC", limit: int | None = None) -> list[Run]:
        allowed = {"start_ns", "name", "cost_pusd", "step_count"}
        column, _, direction = order_by.partition(" ")
        if column not in allowed or direction.upper() not in ("", "ASC", "DESC"):
            raise ValueError(f"cannot order runs by {order_by!r}")
        sql = f"{_SELECT_RUN} ORDER BY {column} {direction or 'ASC'}, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._runs(sql)

    def _runs(self, sql: str, params: tuple = ()) -> list[Run]:
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return [_run(row) for row in cursor.execute(sql, params)]

    def get_run(self, run_id: str) -> Run | None:
        found = self._runs(_SELECT_RUN + " WHERE id=?", (run_id,))
        return found[0] if found else None

    def find_run(self, id_or_prefix: str) -> Run:
        """The run with this id, or the only run whose id starts with it."""
        run = self.get_run(id_or_prefix)
        if run is not None:
            return run
        escaped = id_or_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._runs(
            _SELECT_RUN + " WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 6", (escaped + "%",)
        )
        if len(rows) == 1:
            return rows[0]
        if not rows:
            raise KeyError(f"no run with id {id_or_prefix!r}")
        shown = ", ".join(f"{r.id} ({r.name})" for r in rows[:5])
        more = " and more" if len(rows) > 5 else ""
        raise KeyError(f"run id prefix {id_or_prefix!r} is ambiguous: {shown}{more}")

    def steps(self, run_id: str, payloads: bool = True) -> list[Step]:
        """The steps of a run ordered by start time; ``payloads=False`` leaves out input,
        output and attributes (tool arguments stay)."""
        with collector_paused():
            return list(self.iter_steps(run_id, payloads))

    def iter_steps(self, run_id: str, payloads: bool = True) -> Iterator[Step]:
        columns = list(READ_STEP_COLUMNS)
        if not payloads:
            columns = [c for c in columns if c not in PAYLOAD_COLUMNS]
        sql = (
            f"SELECT {', '.join(columns)} FROM steps WHERE run_id=?"
            " ORDER BY start_ns IS NULL, start_ns, rowid"
        )
        for row in self.conn.execute(sql, (run_id,)):
            yield _row_to_step(row)

    def step_index(self, run_id: str) -> list[tuple]:
        """Light rows for views of big runs, in start order: (id, parent_id, depth, kind,
        name, start_ns, end_ns, status, input_tokens, output_tokens, cost, model, tool_name).
        No payloads; ``step`` loads one step whole. Plain tuples: this is the hot path."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        with collector_paused():
            return cursor.execute(
                "SELECT id, parent_id, depth, kind, name, start_ns, end_ns, status,"
                " coalesce(input_tokens, 0), coalesce(output_tokens, 0), cost_pusd, model, tool_name"
                " FROM steps WHERE run_id=? ORDER BY start_ns, rowid",  # found by the primary key
                (run_id,),
            ).fetchall()

    def cumulative_cost(self, run_id: str) -> list[tuple[int, Decimal]]:
        """(time ns, cost so far) at the end of each step with a cost, in time order: read
        as two integers a step, so that a 100k-step run charts in a blink."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        rows = cursor.execute(
            "SELECT coalesce(end_ns, start_ns) AS t, cost_pusd FROM steps"
            " WHERE run_id=? AND cost_pusd <> 0 AND t IS NOT NULL ORDER BY t",
            (run_id,),
        )
        points, running = [], 0
        for time_ns, pusd in rows:
            running += pusd
            points.append((time_ns, running))
        return [(time_ns, Decimal(total) / PUSD) for time_ns, total in points]

    def step_times(
        self, run_id: str, step_ids: Iterable[str]
    ) -> dict[str, tuple[int | None, int | None]]:
        """(start, end) of some steps, found by their primary key."""
        times = {}
        for step_id in step_ids:
            row = self.conn.execute(
                "SELECT start_ns, end_ns FROM steps WHERE run_id=? AND id=?", (run_id, step_id)
            ).fetchone()
            if row is not None:
                times[step_id] = (row[0], row[1])
        return times

    def step(self, run_id: str, step_id: str, preview: int | None = None) -> Step | None:
        """One step with its payloads. With ``preview``, an input or output longer than that
        many characters comes as a Preview of its JSON text (not decoded): a 50 MB value
        would take 200 ms to read and decode whole."""
        previewed = ("input", "output") if preview else ()
        columns = [f"substr({c}, 1, {int(preview or 0) + 1}) AS {c}" if c in previewed else c
                   for c in READ_STEP_COLUMNS]  # fmt: skip
        # With what its cost is made of and the price it used (see ``explain_stored``).
        price = ", ".join(f"(SELECT {expression} FROM prices WHERE id = price_id)"
                          for expression in ("source", "nullif(date, '')", "label"))  # fmt: skip
        row = self.conn.execute(
            f"SELECT {', '.join([*columns, *PART_COLUMNS])}, {price} FROM steps"
            " WHERE run_id=? AND id=?",
            (run_id, step_id),
        ).fetchone()
        if row is None:
            return None
        cut = {c: row[c] for c in previewed if row[c] is not None and len(row[c]) > (preview or 0)}
        step = _row_to_step(row, skip=cut.keys())
        for name, text in cut.items():
            setattr(step, name, Preview(text[: preview or 0]))
        parts = tuple(row)[len(columns) :]
        step.cost_parts = None if all(v is None for v in parts) else CostParts(*parts)
        return step

    def library(self) -> list[Run]:
        """Every run, newest first, with its totals and the models and tools it used. Runs
        that started together come in the order they were written (by the index on start
        times: ordering them by id as well took SQLite a sort of its own)."""
        with collector_paused():
            return self._runs(_SELECT_RUN + " ORDER BY start_ns DESC")

    def import_warnings(self, import_id: int) -> list[str]:
        return [
            r[0]
            for r in self.conn.execute(
                "SELECT message FROM import_warnings WHERE import_id=? ORDER BY rowid",
                (import_id,),
            )
        ]

    def counts(self) -> dict[str, int]:
        return {
            table: self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("runs", "steps", "imports")
        }

    # -- search -------------------------------------------------------------------------

    def search_index_state(self) -> SearchIndexState:
        row = self.conn.execute(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?", (INDEXED_META_KEY,)
        ).fetchone()
        if row is None:
            return SearchIndexState(False, 0)
        pending = self.conn.execute(
            "SELECT count(*) FROM steps WHERE rowid > ?", (row[0],)
        ).fetchone()[0]
        return SearchIndexState(True, pending)

    def _search_sql(self, query: str | Node | None) -> SearchSQL:
        """The query as SQL; words use the full-text index when it is on and complete,
        else a LIKE scan (always right, slower)."""
        node = parse(query) if isinstance(query, str) else query
        state = self.search_index_state()
        return compile_query(node, fts=state.on and state.pending == 0)

    def _matching(self, sql: SearchSQL, columns: str, where: str = "", params: Sequence = (),
                  run_ids: list[str] | None = None) -> tuple[str, list]:  # fmt: skip
        """SELECT ``columns`` FROM the matching steps (``s``), driven by the full-text
        index, or by the primary key in ``run_ids`` (see ``_looked_in``)."""
        extra = f" AND {where}" if where else ""
        if run_ids is not None:
            extra += " AND s.run_id IN (SELECT value FROM json_each(?))"
            params = (*params, orjson.dumps(run_ids).decode())
        steps = STEPS_OF_RUNS if extra else "steps AS s"
        if sql.match is not None:
            return (
                f"{columns} FROM steps_fts JOIN steps AS s ON s.rowid = steps_fts.rowid"
                f" LEFT JOIN runs AS r ON r.id = s.run_id"
                f" WHERE steps_fts MATCH ? AND {sql.where}{extra}",
                [sql.match, *sql.params, *params],
            )
        return (
            f"{columns} FROM {steps} LEFT JOIN runs AS r ON r.id = s.run_id"
            f" WHERE {sql.where}{extra}",
            [*sql.params, *params],
        )

    def _looked_in(self, search: SearchSQL) -> list[str] | None:
        """The runs a search of steps looks in: the few that meet its run condition (a
        rare match in 1M steps: a read of every step took 0.4 s); None for everywhere, when
        words drive it through the full-text index, or those runs hold many steps (whose
        matches a scan finds early)."""
        if search.match is not None or search.runs is None:
            return None
        condition, params = search.runs
        found, steps = [], 0
        for run_id, count in self.conn.execute(
            f"SELECT id, step_count FROM runs AS r WHERE {condition}", params
        ):
            found.append(run_id)
            steps += count
            if steps > FEW_MATCHES:
                return None
        return found

    def find_steps(
        self, query: str | Node | None, limit: int = 100, offset: int = 0
    ) -> list[StepMatch]:
        """Steps matching a search query, in the order they were stored (oldest import
        first), a page at a time. Raises SearchError for a malformed query."""
        search = self._search_sql(query)
        sql, params = self._matching(search, _SELECT_MATCH, run_ids=self._looked_in(search))
        cursor = self.conn.cursor()
        cursor.row_factory = None
        # Through the index, in the index's own order: no sort of every match.
        order = "steps_fts.rowid" if " steps_fts MATCH ? " in sql else "s.rowid"
        rows = cursor.execute(f"{sql} ORDER BY {order} LIMIT ? OFFSET ?",
                              (*params, int(limit), int(offset)))  # fmt: skip
        return [StepMatch(*row) for row in rows]

    def find_runs(self, query: str | Node | None, limit: int | None = None) -> list[Run]:
        """Runs with at least one step matching a search query, newest first.

        The matching steps are collected first when an index finds them (words, or the
        few runs whose totals can hold a match), else up to SCANNED_MATCHES by a scan, which
        stops at once when matches are common: when that is all of them, their runs are the
        answer (a rare match in 1M steps: milliseconds, where going run by run read every
        step). Else the runs are checked newest first, each through its steps' primary key,
        and a page stops at the first runs found."""
        search = self._search_sql(query)
        limit_sql = "" if limit is None else f" LIMIT {int(limit)}"
        run_ids = self._looked_in(search)
        sql, found = self._matching(search, "SELECT s.run_id", run_ids=run_ids)
        enough = FEW_MATCHES if search.match is not None or run_ids is not None else SCANNED_MATCHES
        rows = self.conn.execute(f"{sql} LIMIT {enough}", found).fetchall()
        if len(rows) < enough:  # every match is in: their runs, newest first
            return self._runs(
                f"{_SELECT_RUN} WHERE id IN (SELECT value FROM json_each(?))"
                f" ORDER BY start_ns DESC, id{limit_sql}",
                (orjson.dumps(sorted({row[0] for row in rows})).decode(),),
            )
        where, params = search.where, list(search.params)
        if search.match is not None:
            where = f"s.rowid IN (SELECT rowid FROM steps_fts WHERE steps_fts MATCH ?) AND {where}"
            params.insert(0, search.match)
        return self._runs(
            f"{_SELECT_RUN} AS r WHERE EXISTS (SELECT 1 FROM {STEPS_OF_RUNS}"
            f" WHERE s.run_id = r.id AND {where}) ORDER BY start_ns DESC, id{limit_sql}",
            tuple(params),
        )

    def find_run_ids(self, query: str | Node | None) -> set[str]:
        """The ids of the runs with at least one step matching a search query."""
        search = self._search_sql(query)
        sql, params = self._matching(search, "SELECT DISTINCT s.run_id",
                                     run_ids=self._looked_in(search))  # fmt: skip
        return {row[0] for row in self.conn.execute(sql, params)}

    def matching_step_ids(self, run_id: str, query: str | Node | None) -> set[str]:
        """The ids of a run's steps that match a search query."""
        sql, params = self._matching(
            self._search_sql(query), "SELECT s.id", "s.run_id = ?", (run_id,)
        )
        return {row[0] for row in self.conn.execute(sql, params)}

    # -- sessions -----------------------------------------------------------------------

    def sessions(self) -> list[Session]:
        """Every session (conversation) with its runs totalled, the latest first."""
        rows = self.conn.execute(
            f"{SESSION_SUMS} WHERE session_id IS NOT NULL GROUP BY session_id"
            " ORDER BY max(start_ns) DESC, session_id"
        )
        return [Session(*row) for row in rows]

    def session(self, session_id: str) -> Session | None:
        row = self.conn.execute(
            f"{SESSION_SUMS} WHERE session_id = ? GROUP BY session_id", (session_id,)
        ).fetchone()
        return None if row is None else Session(*row)

    def session_runs(self, session_id: str) -> list[Run]:
        """The runs of a session in the order they started."""
        return self._runs(
            f"{_SELECT_RUN} WHERE session_id = ? ORDER BY start_ns, id", (session_id,)
        )
