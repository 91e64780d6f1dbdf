"""The local SQLite database: the one place for the schema, its migrations and queries.

Columns (steps): ``run_id``/``id`` identify a step; ``parent_id`` is NULL for a root;
``depth`` is derived at import; times are ns since the epoch; token columns are the
step's own counts (never a roll-up of children; cached is a subset of input and
reasoning a subset of output); ``reported_cost`` is the source's USD figure as exact
decimal text; ``tool_args``/``input``/``output``/``attributes`` are JSON text, stored
whole. ``import_id`` says which import brought the row.

Runs carry totals derived from their steps (``step_count`` … ``reported_cost``).
``cost`` (steps and runs) is written by the cost engine: reported where the source has
it, else computed from the pricing table; ``cost_nusd`` is the run's ``cost`` in integer
nano-USD so that SQL can sort by it.

An import is one transaction: rows are written as the file streams and the whole
thing is rolled back on any error or cancel, so the database is left as it was.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import groupby
from pathlib import Path
from typing import Any

import orjson
import platformdirs
import sqlite_utils

from tracedesk.core.model import (
    Evidence,
    Incident,
    Run,
    Step,
    request_text,
    severity_rank,
    to_decimal,
)

SCHEMA_VERSION = 6
BATCH_SIZE = 5000
MAX_LISTED_WARNINGS = 200  # per import; the count of all warnings is always kept

STEP_COLUMNS = (
    "run_id", "id", "parent_id", "depth", "kind", "name", "start_ns", "end_ns",
    "status", "error", "model", "provider", "input_tokens", "output_tokens",
    "cached_input_tokens", "reasoning_tokens", "cache_creation_tokens", "reported_cost",
    "tool_name",
    "tool_args", "input", "output", "attributes", "import_id",
)  # fmt: skip
STEP_JSON_COLUMNS = frozenset({"tool_args", "input", "output", "attributes"})
INSERT_STEP_SQL = (
    f"INSERT INTO steps({', '.join(STEP_COLUMNS)}) VALUES ({', '.join('?' * len(STEP_COLUMNS))})"
)
PAYLOAD_COLUMNS = ("input", "output", "attributes")  # tool_args are small and always read
READ_STEP_COLUMNS = (*(c for c in STEP_COLUMNS if c != "import_id"), "cost", "cost_source")


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


# Forward migrations: MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_v1, _v2, _v3, _v4, _v5, _v6]
assert len(MIGRATIONS) == SCHEMA_VERSION


class StoreError(Exception):
    """A problem with the database itself (not with an imported file)."""


class ImportCancelled(Exception):
    """The user cancelled an import; the database was rolled back."""


@dataclass
class ImportResult:
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


def default_db_path() -> Path:
    """``$TRACEDESK_DB`` if set, else tracedesk.db in the user's data directory."""
    env = os.environ.get("TRACEDESK_DB")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("tracedesk", appauthor=False)) / "tracedesk.db"


def _json_text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # integers beyond 64 bits: the standard library writes them exactly
        return json.dumps(value, default=str, ensure_ascii=False)


def _step_row(step: Step, import_id: int) -> tuple:
    return (
        step.run_id, step.id, step.parent_id, step.depth, str(step.kind), step.name,
        step.start_ns, step.end_ns, str(step.status), step.error, step.model, step.provider,
        step.input_tokens, step.output_tokens, step.cached_input_tokens, step.reasoning_tokens,
        step.cache_creation_tokens, None if step.reported_cost is None else str(step.reported_cost), step.tool_name,
        _json_text(step.tool_args), _json_text(step.input), _json_text(step.output),
        _json_text(step.attributes or {}), import_id,
    )  # fmt: skip


def _row_to_step(row: sqlite3.Row) -> Step:
    keys = row.keys()
    values = {k: row[k] for k in keys if k in Step.__dataclass_fields__}
    for name in STEP_JSON_COLUMNS & values.keys():
        if values[name] is not None:
            values[name] = orjson.loads(values[name])
    if values.get("attributes") is None:
        values["attributes"] = {}
    values["reported_cost"] = to_decimal(values.get("reported_cost"))
    values["cost"] = to_decimal(values.get("cost"))
    return Step(**values)


def _row_to_run(row: sqlite3.Row) -> Run:
    values = {k: row[k] for k in row.keys() if k in Run.__dataclass_fields__}  # noqa: SIM118
    values["attributes"] = orjson.loads(values["attributes"] or "{}")
    values["reported_cost"] = to_decimal(values["reported_cost"])
    values["cost"] = to_decimal(values["cost"])
    values["wasted_cost"] = to_decimal(values["wasted_cost"])
    return Run(**values)


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


def to_nusd(amount: Decimal | None) -> int:
    return 0 if amount is None else int((amount * 10**9).to_integral_value())


def _run_totals(run_id: str, rows: list[tuple], depths: dict[str, int]) -> tuple:
    """The UPDATE parameters of a run's totals from its step rows (see _finish_runs)."""
    sums = [0, 0, 0, 0, 0]
    errors, root_failed = 0, False
    starts, ends, costs = [], [], []
    models: dict[str, None] = {}  # insertion-ordered sets
    tools: dict[str, None] = {}
    for row in rows:
        if row[14]:
            models[row[14]] = None
        if row[15]:
            tools[row[15]] = None
        if row[5] == "error":
            errors += 1
            root_failed = root_failed or depths[row[2]] == 0
        if row[6] is not None:
            starts.append(row[6])
        end = row[7] if row[7] is not None else row[6]
        if end is not None:
            ends.append(end)
        for i in range(5):
            sums[i] += row[8 + i] or 0
        if row[13] is not None:
            costs.append(Decimal(row[13]))
    cost = sum(costs, Decimal(0)) if costs else None
    return (
        len(rows), errors, *sums, None if cost is None else str(cost), ",".join(models) or None,
        ",".join(tools) or None, min(starts, default=None), max(ends, default=None), root_failed,
        len(rows), run_id,
    )  # fmt: skip


class Store:
    """A tracedesk database. Open with ``Store(path)``; use as a context manager."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun and ended explicitly below.
        # A generous busy timeout: the GUI reads while a worker import holds the write lock.
        self.conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self.conn.row_factory = sqlite3.Row
        self.db = sqlite_utils.Database(self.conn)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()

    # -- schema -----------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        version = self.schema_version
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: database schema version {version} is newer than this "
                f"tracedesk understands ({SCHEMA_VERSION}); upgrade tracedesk"
            )
        for target in range(version, SCHEMA_VERSION):
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                MIGRATIONS[target](self.db)
                self.conn.execute(f"PRAGMA user_version = {target + 1}")
                self.conn.execute("COMMIT")
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise

    # -- import -----------------------------------------------------------------

    def find_import(self, sha256: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT * FROM imports WHERE sha256 = ? ORDER BY id LIMIT 1", (sha256,)
        ).fetchone()

    def ingest(
        self,
        records: Iterable[Run | Step],
        result: ImportResult,
        sha256: str,
        cancelled: Callable[[], bool] | None = None,
        finish: Callable[[set[str]], None] | None = None,
    ) -> ImportResult:
        """Write the runs and steps of one file in one transaction.

        Steps already in the database (same run and step id) are skipped, so importing
        the same runs again changes nothing. On any exception the transaction is rolled
        back and the exception propagates. ``finish(run_ids)`` runs inside the same
        transaction once the runs are complete (the importer prices them there).
        """
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            import_id = conn.execute(
                "INSERT INTO imports(path, sha256, format, imported_at) VALUES (?, ?, ?, ?)",
                (result.path, sha256, result.format, time.strftime("%Y-%m-%dT%H:%M:%S%z")),
            ).lastrowid
            result.import_id = import_id
            touched: set[str] = set()
            batch: list[tuple] = []
            for n, record in enumerate(records):
                if cancelled is not None and n % 1000 == 0 and cancelled():
                    raise ImportCancelled(result.path)
                if isinstance(record, Step):
                    if record.run_id not in touched:
                        self._ensure_run(record.run_id, result.format, import_id)
                        touched.add(record.run_id)
                    batch.append(_step_row(record, import_id))
                    if len(batch) >= BATCH_SIZE:
                        self._insert_steps(batch, result, import_id)
                        batch.clear()
                else:
                    self._upsert_run(record, import_id)
                    touched.add(record.id)
            self._insert_steps(batch, result, import_id)
            if cancelled is not None and cancelled():
                raise ImportCancelled(result.path)
            self._finish_runs(touched, result)
            if finish is not None:
                finish(touched)
            result.runs = len(touched)
            conn.execute(
                "UPDATE imports SET runs=?, steps=?, skipped=?, bad_records=?, warning_count=?"
                " WHERE id=?",
                (result.runs, result.steps, result.skipped, result.bad_records,
                 result.warning_count, import_id),
            )  # fmt: skip
            conn.executemany(
                "INSERT INTO import_warnings(import_id, message) VALUES (?, ?)",
                [(import_id, w) for w in result.warnings],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            result.import_id = None
            raise
        return result

    def _ensure_run(self, run_id: str, source_format: str, import_id: int) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO runs(id, source_format, import_id) VALUES (?, ?, ?)",
            (run_id, source_format, import_id),
        )

    def _upsert_run(self, run: Run, import_id: int) -> None:
        # What the database already knows wins; a later record only fills gaps (a
        # trace split over several lines or files names its run more than once).
        self.conn.execute(
            """
            INSERT INTO runs(id, source_format, name, request, session_id, start_ns, end_ns,
                             status, attributes, import_id)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(id) DO UPDATE SET
                name = CASE WHEN runs.name = '' THEN excluded.name ELSE runs.name END,
                request = COALESCE(runs.request, excluded.request),
                session_id = COALESCE(runs.session_id, excluded.session_id),
                start_ns = COALESCE(runs.start_ns, excluded.start_ns),
                end_ns = COALESCE(runs.end_ns, excluded.end_ns),
                status = CASE WHEN runs.status = 'unset' THEN excluded.status
                              ELSE runs.status END,
                attributes = CASE WHEN runs.attributes = '{}' THEN excluded.attributes
                                  ELSE runs.attributes END
            """,
            (run.id, run.source_format, run.name, run.request, run.session_id, run.start_ns,
             run.end_ns, str(run.status), _json_text(run.attributes or {}), import_id),
        )  # fmt: skip

    def _insert_steps(self, batch: list[tuple], result: ImportResult, import_id: int) -> None:
        if not batch:
            return
        sql = INSERT_STEP_SQL
        conn = self.conn
        conn.execute("SAVEPOINT batch")
        try:
            conn.executemany(sql, batch)
            conn.execute("RELEASE batch")
            result.steps += len(batch)
            return
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK TO batch")
            conn.execute("RELEASE batch")
        # Slow path, only when some step ids already exist: find out which, row by row.
        for row in batch:
            try:
                conn.execute(sql, row)
                result.steps += 1
            except sqlite3.IntegrityError:
                run_id, step_id = row[0], row[1]
                owner = conn.execute(
                    "SELECT import_id FROM steps WHERE run_id=? AND id=?", (run_id, step_id)
                ).fetchone()
                if owner is not None and owner[0] == import_id:
                    result.warn(f"run {run_id}: duplicate step id {step_id!r}; kept the first")
                else:
                    result.skipped += 1

    def _finish_runs(self, run_ids: set[str], result: ImportResult) -> None:
        """Derive depths and run totals for the runs an import touched, in one pass.

        Steps whose parent is missing, or whose parent links form a cycle, are attached
        to the run root with a warning.
        """
        conn = self.conn
        conn.execute("CREATE TEMP TABLE IF NOT EXISTS touched(run_id TEXT PRIMARY KEY)")
        conn.execute("DELETE FROM touched")
        conn.executemany("INSERT INTO touched VALUES (?)", ((r,) for r in run_ids))
        rows = conn.execute(
            "SELECT steps.rowid, run_id, id, parent_id, depth, status, start_ns, end_ns,"
            " input_tokens, output_tokens, cached_input_tokens, reasoning_tokens,"
            " cache_creation_tokens, reported_cost,"
            " model, tool_name"
            " FROM steps WHERE run_id IN (SELECT run_id FROM touched) ORDER BY run_id"
        )
        depth_updates: list[tuple[int, int]] = []
        totals: list[tuple] = []
        for run_id, group in groupby(rows, key=lambda r: r[1]):
            steps = list(group)
            depths = self._tree(run_id, steps, result)
            depth_updates.extend((depths[r[2]], r[0]) for r in steps if depths[r[2]] != r[4])
            totals.append(_run_totals(run_id, steps, depths))
        conn.executemany("UPDATE steps SET depth=? WHERE rowid=?", depth_updates)
        conn.executemany(
            """
            UPDATE runs SET step_count=?, error_count=?, input_tokens=?, output_tokens=?,
                cached_input_tokens=?, reasoning_tokens=?, cache_creation_tokens=?,
                reported_cost=?, models=?, tools=?,
                start_ns = coalesce(?, start_ns), end_ns = coalesce(?, end_ns),
                status = CASE WHEN status != 'unset' THEN status WHEN ? THEN 'error'
                              WHEN ? > 0 THEN 'ok' ELSE status END
            WHERE id=?
            """,
            totals,
        )
        # Runs without a name take their first root step's; without a request, the
        # user's words from their earliest step inputs.
        conn.execute(
            """
            UPDATE runs SET name = coalesce((
                SELECT name FROM steps WHERE run_id = runs.id AND parent_id IS NULL
                ORDER BY start_ns LIMIT 1), '')
            WHERE name = '' AND id IN (SELECT run_id FROM touched)
            """
        )
        missing = conn.execute(
            "SELECT id FROM runs WHERE request IS NULL AND id IN (SELECT run_id FROM touched)"
        ).fetchall()
        for (run_id,) in missing:
            self._fill_request(run_id)

    def _tree(self, run_id: str, rows: list[tuple], result: ImportResult) -> dict[str, int]:
        """Depth of every step of a run; repairs missing parents and cycles in the table."""
        parent_of = {r[2]: r[3] for r in rows}
        depth: dict[str, int] = {}
        detached: dict[str, tuple[str, str]] = {}  # step id -> (reason, lost parent id)
        for step_id in parent_of:
            chain: list[str] = []
            on_chain: set[str] = set()
            current = step_id
            while current not in depth:
                if current in on_chain:  # a parent cycle closes here: cut it at this step
                    detached[current] = ("is in a parent cycle", parent_of[current])
                    parent_of[current] = None
                    depth[current] = 0
                    chain = chain[: chain.index(current)]
                    break
                parent = parent_of[current]
                if parent is not None and parent not in parent_of:
                    detached[current] = ("has a missing parent", parent)
                    parent_of[current] = parent = None
                if parent is None:
                    depth[current] = 0
                    break
                chain.append(current)
                on_chain.add(current)
                current = parent
            base = depth.get(current, 0)
            for node in reversed(chain):
                base += 1
                depth[node] = base
        for step_id, (reason, lost_parent) in detached.items():
            result.warn(
                f"run {run_id}: step {step_id!r} {reason} ({lost_parent!r});"
                " attached to the run root"
            )
            self.conn.execute(
                "UPDATE steps SET parent_id=NULL,"
                " attributes=json_set(attributes, '$.\"tracedesk.lost_parent_id\"', ?)"
                " WHERE run_id=? AND id=?",
                (lost_parent, run_id, step_id),
            )
        return depth

    def _fill_request(self, run_id: str) -> None:
        inputs = self.conn.execute(
            "SELECT input FROM steps WHERE run_id=? AND input IS NOT NULL"
            " ORDER BY start_ns, rowid LIMIT 20",
            (run_id,),
        ).fetchall()
        for (payload,) in inputs:
            text = request_text(orjson.loads(payload))
            if text:
                self.conn.execute("UPDATE runs SET request=? WHERE id=?", (text, run_id))
                return

    # -- costs and metadata -------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def write_costs(self, steps: Iterable[tuple], runs: Iterable[tuple]) -> None:
        """Steps: (cost text, source, run id, step id); runs: (cost text, unpriced, run id)."""
        self.conn.executemany(
            "UPDATE steps SET cost=?, cost_source=? WHERE run_id=? AND id=?", steps
        )
        self.conn.executemany(
            "UPDATE runs SET cost=?, cost_nusd=?, unpriced_steps=? WHERE id=?",
            (
                (cost, to_nusd(to_decimal(cost)), unpriced, run_id)
                for cost, unpriced, run_id in runs
            ),
        )

    def replace_incidents(self, run_ids: Iterable[str], incidents: Iterable[Incident]) -> None:
        """Store the incidents of these runs in place of their old ones, with the runs'
        wasted totals (inside a transaction)."""
        conn = self.conn
        by_run: dict[str, list[Incident]] = {run_id: [] for run_id in run_ids}
        for incident in incidents:
            by_run[incident.run_id].append(incident)
        conn.executemany("DELETE FROM incidents WHERE run_id=?", ((r,) for r in by_run))
        conn.executemany(
            "INSERT INTO incidents(run_id, kind, severity, message, evidence, step_ids,"
            " wasted_step_ids, wasted_tokens, wasted_cost, wasted_ns, wasted_unpriced)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                (i.run_id, i.kind, i.severity, i.message,
                 orjson.dumps([[e.kind, e.severity, e.message] for e in i.evidence]).decode(),
                 orjson.dumps(i.step_ids).decode(), orjson.dumps(i.wasted_step_ids).decode(),
                 i.wasted_tokens, str(i.wasted_cost), i.wasted_ns, i.wasted_unpriced)
                for found in by_run.values() for i in found
            ),
        )  # fmt: skip
        conn.executemany(
            "UPDATE runs SET incident_count=?, worst_severity=?, wasted_tokens=?,"
            " wasted_cost=?, wasted_ns=?, wasted_unpriced=? WHERE id=?",
            (
                (len(found), max((i.severity for i in found), key=severity_rank, default=None),
                 sum(i.wasted_tokens for i in found),
                 str(sum((i.wasted_cost for i in found), Decimal(0))) if found else None,
                 sum(i.wasted_ns for i in found), sum(i.wasted_unpriced for i in found), run_id)
                for run_id, found in by_run.items()
            ),
        )  # fmt: skip

    def incidents(self, run_id: str | None = None) -> list[Incident]:
        """Stored incidents of one run, or of all runs, in order."""
        sql = "SELECT * FROM incidents"
        if run_id is None:
            rows = self.conn.execute(sql + " ORDER BY run_id, id")
        else:
            rows = self.conn.execute(sql + " WHERE run_id=? ORDER BY id", (run_id,))
        return [_row_to_incident(r) for r in rows]

    def run_ids(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT id FROM runs ORDER BY start_ns, id")]

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- queries ----------------------------------------------------------------

    def runs(self, order_by: str = "start_ns DESC", limit: int | None = None) -> list[Run]:
        allowed = {"start_ns", "name", "cost_nusd", "step_count"}
        column, _, direction = order_by.partition(" ")
        if column not in allowed or direction.upper() not in ("", "ASC", "DESC"):
            raise ValueError(f"cannot order runs by {order_by!r}")
        sql = f"SELECT * FROM runs ORDER BY {column} {direction or 'ASC'}, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_row_to_run(r) for r in self.conn.execute(sql)]

    def get_run(self, run_id: str) -> Run | None:
        row = self.conn.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return None if row is None else _row_to_run(row)

    def find_run(self, id_or_prefix: str) -> Run:
        """The run with this id, or the only run whose id starts with it."""
        run = self.get_run(id_or_prefix)
        if run is not None:
            return run
        escaped = id_or_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.conn.execute(
            "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' LIMIT 2", (escaped + "%",)
        ).fetchall()
        if len(rows) == 1:
            return _row_to_run(rows[0])
        if not rows:
            raise KeyError(f"no run with id {id_or_prefix!r}")
        raise KeyError(f"run id prefix {id_or_prefix!r} is ambiguous")

    def steps(self, run_id: str, payloads: bool = True) -> list[Step]:
        """The steps of a run ordered by start time; ``payloads=False`` leaves out input,
        output and attributes (tool arguments stay)."""
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
        return cursor.execute(
            "SELECT id, parent_id, depth, kind, name, start_ns, end_ns, status,"
            " coalesce(input_tokens, 0), coalesce(output_tokens, 0), cost, model, tool_name"
            " FROM steps WHERE run_id=? ORDER BY start_ns, rowid",  # served by steps_run_start
            (run_id,),
        ).fetchall()

    def step(self, run_id: str, step_id: str) -> Step | None:
        """One step with its payloads."""
        row = self.conn.execute(
            f"SELECT {', '.join(READ_STEP_COLUMNS)} FROM steps WHERE run_id=? AND id=?",
            (run_id, step_id),
        ).fetchone()
        return None if row is None else _row_to_step(row)

    def library(self) -> list[sqlite3.Row]:
        """Every run, newest first, as rows (with the models and tools it used)."""
        return self.conn.execute("SELECT * FROM runs ORDER BY start_ns DESC, id").fetchall()

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
