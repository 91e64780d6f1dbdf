"""The database schema, column by column, and its forward migrations.

Columns (steps): ``run_id``/``id`` identify a step; ``parent_id`` is NULL for a root;
``depth`` is derived at import; times are ns since the epoch; token columns are the
step's own counts (never a roll-up of children; cached is a subset of input and
reasoning a subset of output; ``cache_write_1h_tokens`` a subset of the cache writes,
NULL where the source does not split them); ``reported_cost`` is the source's USD figure
as exact decimal text; ``tool_args``/``input``/``output``/``attributes`` are JSON text,
stored whole. ``import_id`` says which import brought the row.

Runs carry totals derived from their steps (``step_count`` … ``reported_cost``).
``cost_pusd`` (steps and runs) is the cost in integer pico-dollars, the one stored truth
for cost: the source's reported cost where it has one, else the tokens priced by the
price catalogue (or the user's prices). Integers let SQL sort and sum costs exactly.
``*_pusd`` (steps) say what a computed cost is made of, per usage type, and ``price_id``
which price it used (``prices``: its source and the date it took effect; see ``_v9``).

An import is one transaction (see ``tracedesk.core.ingest``): each run is written once,
analysed, and the whole import is rolled back on any error or cancel.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite_utils

SCHEMA_VERSION = 13

STEP_COLUMNS = (
    "run_id", "id", "parent_id", "depth", "kind", "name", "start_ns", "end_ns",
    "status", "error", "model", "provider", "input_tokens", "output_tokens",
    "cached_input_tokens", "reasoning_tokens", "cache_creation_tokens",
    "cache_write_1h_tokens", "reported_cost", "tool_name", "tool_args", "input", "output",
    "attributes", "cost_pusd", "cost_source", "input_pusd", "cache_read_pusd",
    "cache_write_pusd", "cache_write_1h_pusd", "output_pusd", "reasoning_pusd",
    "request_pusd", "price_id", "import_id",
)  # fmt: skip
PART_COLUMNS = STEP_COLUMNS[STEP_COLUMNS.index("input_pusd") : STEP_COLUMNS.index("price_id")]
STEP_JSON_COLUMNS = frozenset({"tool_args", "input", "output", "attributes"})
INSERT_STEP_SQL = (
    f"INSERT INTO steps({', '.join(STEP_COLUMNS)}) VALUES ({', '.join('?' * len(STEP_COLUMNS))})"
)
PAYLOAD_COLUMNS = ("input", "output", "attributes")  # tool_args are small and always read
# What a Step is read back with: a cost's parts are for summaries, which sum them in SQL.
READ_STEP_COLUMNS = tuple(
    c for c in STEP_COLUMNS if c not in (*PART_COLUMNS, "price_id", "import_id")
)
RUN_COLUMNS = (
    "id", "source_format", "name", "request", "session_id", "start_ns", "end_ns", "status",
    "attributes", "step_count", "error_count", "input_tokens", "output_tokens",
    "cached_input_tokens", "reasoning_tokens", "cache_creation_tokens",
    "cache_write_1h_tokens", "reported_cost", "cost_pusd", "unpriced_steps",
    "incident_count", "worst_severity", "wasted_tokens", "wasted_cost", "wasted_ns",
    "wasted_unpriced", "models", "tools", "import_id",
)  # fmt: skip


def _v1(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE imports (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            format TEXT NOT NULL,
            runs INTEGER NOT NULL DEFAULT 0,       -- runs touched by this import
            steps INTEGER NOT NULL DEFAULT 0,      -- steps written
            skipped INTEGER NOT NULL DEFAULT 0,    -- steps already in the database
            bad_records INTEGER NOT NULL DEFAULT 0,
            warning_count INTEGER NOT NULL DEFAULT 0,
            imported_at TEXT NOT NULL
        );
        CREATE INDEX imports_sha256 ON imports(sha256);
        CREATE TABLE import_warnings (
            import_id INTEGER NOT NULL REFERENCES imports(id) ON DELETE CASCADE,
            message TEXT NOT NULL
        );
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            source_format TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL DEFAULT '',
            request TEXT,
            session_id TEXT,
            start_ns INTEGER,
            end_ns INTEGER,
            status TEXT NOT NULL DEFAULT 'unset',
            attributes TEXT NOT NULL DEFAULT '{}',
            step_count INTEGER NOT NULL DEFAULT 0,
            error_count INTEGER NOT NULL DEFAULT 0,
            input_tokens INTEGER NOT NULL DEFAULT 0,
            output_tokens INTEGER NOT NULL DEFAULT 0,
            cached_input_tokens INTEGER NOT NULL DEFAULT 0,
            reasoning_tokens INTEGER NOT NULL DEFAULT 0,
            reported_cost TEXT,
            cost_nusd INTEGER NOT NULL DEFAULT 0,
            import_id INTEGER REFERENCES imports(id)
        );
        CREATE INDEX runs_start ON runs(start_ns);
        CREATE INDEX runs_name ON runs(name);
        CREATE INDEX runs_cost ON runs(cost_nusd);
        CREATE TABLE steps (
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            id TEXT NOT NULL,
            parent_id TEXT,
            depth INTEGER NOT NULL DEFAULT 0,
            kind TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            start_ns INTEGER,
            end_ns INTEGER,
            status TEXT NOT NULL DEFAULT 'unset',
            error TEXT,
            model TEXT,
            provider TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cached_input_tokens INTEGER,
            reasoning_tokens INTEGER,
            reported_cost TEXT,
            tool_name TEXT,
            tool_args TEXT,
            input TEXT,
            output TEXT,
            attributes TEXT NOT NULL DEFAULT '{}',
            import_id INTEGER REFERENCES imports(id),
            PRIMARY KEY (run_id, id)
        );
        CREATE INDEX steps_run_start ON steps(run_id, start_ns);
        CREATE INDEX steps_run_parent ON steps(run_id, parent_id);
        """
    )


def _v2(db: sqlite_utils.Database) -> None:
    """Costs: each step's own cost and its source; run totals of reported + computed cost."""
    db.executescript(
        """
        ALTER TABLE steps ADD COLUMN cost TEXT;          -- USD, exact decimal text
        ALTER TABLE steps ADD COLUMN cost_source TEXT;   -- see analysis.cost.CostSource
        ALTER TABLE runs ADD COLUMN cost TEXT;           -- USD, sum of the steps' costs
        ALTER TABLE runs ADD COLUMN unpriced_steps INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """
    )


def _v3(db: sqlite_utils.Database) -> None:
    """Findings of the loop detectors, recomputed on import and when the rules change."""
    db.executescript(
        """
        CREATE TABLE findings (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,             -- retry_storm, repeated_error, oscillation, ...
            severity TEXT NOT NULL,         -- info, warning, error
            first_step TEXT,
            last_step TEXT,
            step_ids TEXT NOT NULL,         -- JSON list: the steps involved
            wasted_step_ids TEXT NOT NULL,  -- JSON list: the steps whose spend was wasted
            message TEXT NOT NULL,
            wasted_tokens INTEGER NOT NULL DEFAULT 0,
            wasted_cost TEXT NOT NULL DEFAULT '0'
        );
        CREATE INDEX findings_run ON findings(run_id);
        ALTER TABLE runs ADD COLUMN finding_count INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN worst_severity TEXT;
        """
    )


def _v4(db: sqlite_utils.Database) -> None:
    """The models and tools a run used, stored so the runs library needs no step scan."""
    db.executescript(
        """
        ALTER TABLE runs ADD COLUMN models TEXT;   -- comma-separated
        ALTER TABLE runs ADD COLUMN tools TEXT;
        UPDATE runs SET
            models = (SELECT group_concat(DISTINCT model) FROM steps
                      WHERE run_id = runs.id AND model IS NOT NULL),
            tools = (SELECT group_concat(DISTINCT tool_name) FROM steps
                     WHERE run_id = runs.id AND tool_name IS NOT NULL);
        """
    )


def _v5(db: sqlite_utils.Database) -> None:
    """Incidents replace findings: the findings of every detector that saw the same steps
    are one row, with the others as evidence and the waste counted once (time included)."""
    db.executescript(
        """
        DROP TABLE findings;
        CREATE TABLE incidents (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
            kind TEXT NOT NULL,             -- the headline detector: retry_storm, oscillation, ...
            severity TEXT NOT NULL,         -- info, warning, error (the worst of its findings)
            message TEXT NOT NULL,          -- the headline finding's message
            evidence TEXT NOT NULL,         -- JSON list of the other findings [kind, severity, message]
            step_ids TEXT NOT NULL,         -- JSON list: the steps involved, in start order
            wasted_step_ids TEXT NOT NULL,  -- JSON list: the steps whose spend was wasted
            wasted_tokens INTEGER NOT NULL,
            wasted_cost TEXT NOT NULL,      -- USD, exact decimal text
            wasted_ns INTEGER NOT NULL,     -- time covered by the wasted steps
            wasted_unpriced INTEGER NOT NULL  -- wasted steps with tokens but no price
        );
        CREATE INDEX incidents_run ON incidents(run_id);
        ALTER TABLE runs RENAME COLUMN finding_count TO incident_count;
        ALTER TABLE runs ADD COLUMN wasted_tokens INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN wasted_cost TEXT;
        ALTER TABLE runs ADD COLUMN wasted_ns INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE runs ADD COLUMN wasted_unpriced INTEGER NOT NULL DEFAULT 0;
        UPDATE runs SET incident_count = 0, worst_severity = NULL;
        DELETE FROM meta WHERE key = 'loop_rules_fingerprint';  -- recompute on next open
        """
    )


def _v6(db: sqlite_utils.Database) -> None:
    """Cache-creation (cache write) tokens, a subset of input billed at their own price."""
    db.executescript(
        """
        ALTER TABLE steps ADD COLUMN cache_creation_tokens INTEGER;
        ALTER TABLE runs ADD COLUMN cache_creation_tokens INTEGER NOT NULL DEFAULT 0;
        """
    )


def _v7(db: sqlite_utils.Database) -> None:
    """Steps keep only their primary key index: every query finds a run's steps through it
    (and sorts them by start), nothing looks steps up by parent. A third less to write on
    import, and 130 bytes less per step."""
    db.executescript(
        """
        DROP INDEX IF EXISTS steps_run_parent;
        DROP INDEX IF EXISTS steps_run_start;
        """
    )


def _v8(db: sqlite_utils.Database) -> None:
    """One source of truth for cost: integer pico-dollars (``cost_pusd``) on steps and runs,
    which SQL sums exactly, in place of decimal text plus a nano-dollar copy for sorting."""
    for table in ("steps", "runs"):
        db.execute(f"ALTER TABLE {table} ADD COLUMN cost_pusd INTEGER")
        rows = db.execute(f"SELECT rowid, cost FROM {table} WHERE cost IS NOT NULL").fetchall()
        db.conn.executemany(
            f"UPDATE {table} SET cost_pusd=? WHERE rowid=?",
            ((int(Decimal(cost).scaleb(12).to_integral_value()), rowid) for rowid, cost in rows),
        )
    db.executescript(
        """
        DROP INDEX runs_cost;
        ALTER TABLE steps DROP COLUMN cost;
        ALTER TABLE runs DROP COLUMN cost;
        ALTER TABLE runs DROP COLUMN cost_nusd;
        CREATE INDEX runs_cost ON runs(cost_pusd);
        """
    )


def _v9(db: sqlite_utils.Database) -> None:
    """What each step's cost is made of: pico-dollars per usage type (input, cache read,
    cache write, output, reasoning, per-request fee), integers that SQL sums, and the price
    used, as an id into ``prices`` (source, and the date it took effect or ''): a few bytes
    a step. Filled by re-pricing."""
    db.executescript(
        """
        ALTER TABLE steps ADD COLUMN input_pusd INTEGER;
        ALTER TABLE steps ADD COLUMN cache_read_pusd INTEGER;
        ALTER TABLE steps ADD COLUMN cache_write_pusd INTEGER;
        ALTER TABLE steps ADD COLUMN output_pusd INTEGER;
        ALTER TABLE steps ADD COLUMN reasoning_pusd INTEGER;
        ALTER TABLE steps ADD COLUMN request_pusd INTEGER;
        ALTER TABLE steps ADD COLUMN price_id INTEGER;
        CREATE TABLE prices (
            id INTEGER PRIMARY KEY, source TEXT NOT NULL, date TEXT NOT NULL,
            UNIQUE (source, date)
        );
        DELETE FROM meta WHERE key = 'pricing_fingerprint';  -- re-price on next open
        """
    )


SEARCH_META_KEY = "search_index"  # "on" (the default) or "off"
INDEXED_META_KEY = "search_indexed_rowid"  # steps up to this rowid are in the index
# What the full-text index holds of a step (core.search.FTS_COLUMNS is the same list).
FTS_COLUMNS = ("name", "tool_name", "error", "tool_args", "input", "output", "attributes")
FTS_TOKENIZE = "unicode61 remove_diacritics 2"
_INDEXED_UP_TO = f"(SELECT CAST(value AS INTEGER) FROM meta WHERE key = '{INDEXED_META_KEY}')"


def create_search_index(db: sqlite_utils.Database) -> None:
    """The full-text index of steps: an FTS5 table over the steps table's own columns
    (external content, so the text is not stored twice), as sqlite-utils' ``enable_fts``
    makes it, but empty: rows are added in rowid order by ``Database.index_steps``, in
    chunks with progress, up to the rowid kept in ``meta``. Deleted and changed steps
    that are already indexed leave or change the index by trigger; new steps are not
    indexed by trigger, which would cost every import (see bench/README.md)."""
    from sqlite_utils.db import Table

    table = db["steps"]
    assert isinstance(table, Table)
    columns = ", ".join(FTS_COLUMNS)
    olds = ", ".join(f"old.{c}" for c in FTS_COLUMNS)
    news = ", ".join(f"new.{c}" for c in FTS_COLUMNS)
    changed = " OR ".join(f"old.{c} IS NOT new.{c}" for c in FTS_COLUMNS)
    db.execute(
        f"CREATE VIRTUAL TABLE steps_fts USING FTS5 ({columns},"
        f" tokenize={db.quote(FTS_TOKENIZE)}, content=[steps])"
    )
    # Named as enable_fts names its triggers, so that sqlite-utils' disable_fts drops them.
    db.execute(
        f"""CREATE TRIGGER steps_ad AFTER DELETE ON steps
        WHEN old.rowid <= {_INDEXED_UP_TO} BEGIN
          INSERT INTO steps_fts(steps_fts, rowid, {columns}) VALUES ('delete', old.rowid, {olds});
        END"""
    )
    db.execute(
        f"""CREATE TRIGGER steps_au AFTER UPDATE OF {columns} ON steps
        WHEN old.rowid <= {_INDEXED_UP_TO} AND ({changed}) BEGIN
          INSERT INTO steps_fts(steps_fts, rowid, {columns}) VALUES ('delete', old.rowid, {olds});
          INSERT INTO steps_fts(rowid, {columns}) VALUES (new.rowid, {news});
        END"""
    )
    db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, '0')", (INDEXED_META_KEY,))


def drop_search_index(db: sqlite_utils.Database) -> None:
    from sqlite_utils.db import Table

    table = db["steps"]
    assert isinstance(table, Table)
    if db["steps_fts"].exists():
        table.disable_fts()
    db.execute("DROP TRIGGER IF EXISTS steps_ad")
    db.execute("DROP TRIGGER IF EXISTS steps_au")
    db.execute("DELETE FROM meta WHERE key = ?", (INDEXED_META_KEY,))


def _v10(db: sqlite_utils.Database) -> None:
    """Search: the full-text index of steps (built on first search, see
    ``create_search_index``) and runs found by session (conversation, thread)."""
    create_search_index(db)
    db.execute("CREATE INDEX runs_session ON runs(session_id) WHERE session_id IS NOT NULL")


def _v11(db: sqlite_utils.Database) -> None:
    """1-hour cache writes: of a step's cache-creation tokens, those written to Anthropic's
    1-hour cache (NULL where the source does not say), and their cost as a part of its own
    (the rest of the writes stay in ``cache_write_pusd``, at the 5-minute price). Old steps
    have no split until re-imported, so their costs stand as they are."""
    db.executescript(
        """
        ALTER TABLE steps ADD COLUMN cache_write_1h_tokens INTEGER;
        ALTER TABLE steps ADD COLUMN cache_write_1h_pusd INTEGER;
        ALTER TABLE runs ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
        """
    )


def _v12(db: sqlite_utils.Database) -> None:
    """The label of each model price (``openai/gpt-4o``), so that costs by model group under
    the price their steps used without loading the catalogue; NULL for prices stored before
    (those models are looked up, as before)."""
    db.execute("ALTER TABLE prices ADD COLUMN label TEXT")


def _v13(db: sqlite_utils.Database) -> None:
    """Search filters that match few steps, found without reading every step: steps of
    the kinds other than model and tool calls (5 % of steps; ``kind:handoff``), and the runs
    with a negative cost (a source's), whose total is no bound on their steps' costs
    (``cost>5`` looks only in runs that cost that much). Both hold almost nothing."""
    db.executescript(
        """
        CREATE INDEX steps_rare_kind ON steps(kind, run_id) WHERE kind NOT IN ('llm', 'tool');
        CREATE INDEX steps_negative_cost ON steps(run_id) WHERE cost_pusd < 0;
        """
    )


# Forward migrations: MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10, _v11, _v12, _v13,
]  # fmt: skip
assert len(MIGRATIONS) == SCHEMA_VERSION
