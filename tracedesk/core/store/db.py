"""The connection, its transactions and everything that writes.

Writes happen inside a transaction begun here (``transaction`` or ``import_transaction``);
rows are inserted through the raw connection, the hot path, and sqlite-utils runs the
schema migrations.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, cast

import orjson
import platformdirs

if TYPE_CHECKING:
    import sqlite_utils

from tracedesk.core.model import (
    CostParts,
    ImportResult,
    Incident,
    Run,
    Step,
    json_text,
    severity_rank,
    to_pusd,
)
from tracedesk.core.store import schema
from tracedesk.core.store.rows import (
    NO_PARTS,
    PARTS,
    bindable,
    incident_row,
    price_key,
    run_row,
    step_row,
    with_nulls,
)
from tracedesk.core.store.schema import (
    FTS_COLUMNS,
    INDEXED_META_KEY,
    INSERT_STEP_SQL,
    PART_COLUMNS,
    RUN_COLUMNS,
    SEARCH_META_KEY,
)

INDEX_CHUNK = 20_000  # steps indexed per transaction (and per progress report)
WRITE_WAIT_S = 600  # how long to wait for another writer before giving up

# sqlite3 binds a None parameter only after looking for a way to adapt it, and a step row
# has 35 columns, most of them NULL: a registered adapter, a C function that returns None,
# makes that a dictionary lookup (inserting a step 11.3 -> 7.9 us). It binds NULL as
# before; the registry is the sqlite3 module's, process-wide.
sqlite3.register_adapter(type(None), cast(Callable[[None], None], {}.get))
INSERT_RUN_SQL = (
    f"INSERT INTO runs({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
)
# A merged run: every derived column is rewritten; the import that first brought it stays.
UPDATE_RUN_SQL = f"UPDATE runs SET {', '.join(f'{c}=?' for c in RUN_COLUMNS[1:-1])} WHERE id=?"
COST_SQL = f"cost_pusd=?, cost_source=?, {'=?, '.join(PART_COLUMNS)}=?, price_id=?"
UPDATE_STEP_SQL = (
    f"UPDATE steps SET parent_id=?, depth=?, {COST_SQL}, attributes=? WHERE run_id=? AND id=?"
)
INSERT_INCIDENT_SQL = (
    "INSERT INTO incidents(run_id, kind, severity, message, evidence, step_ids,"
    " wasted_step_ids, wasted_tokens, wasted_cost, wasted_ns, wasted_unpriced)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?)"
)


RUNNING_TOTALS_SQL = """
UPDATE runs SET step_count=t.n, error_count=t.errors, input_tokens=t.i, output_tokens=t.o,
    cached_input_tokens=t.c, reasoning_tokens=t.r, cache_creation_tokens=t.w,
    cache_write_1h_tokens=t.w1h, cost_pusd=t.cost, start_ns=COALESCE(t.first, runs.start_ns),
    end_ns=COALESCE(t.last, runs.end_ns), models=t.models, tools=t.tools
FROM (SELECT count(*) AS n, COALESCE(sum(status='error'), 0) AS errors,
             COALESCE(sum(input_tokens), 0) AS i, COALESCE(sum(output_tokens), 0) AS o,
             COALESCE(sum(cached_input_tokens), 0) AS c, COALESCE(sum(reasoning_tokens), 0) AS r,
             COALESCE(sum(cache_creation_tokens), 0) AS w,
             COALESCE(sum(cache_write_1h_tokens), 0) AS w1h, sum(cost_pusd) AS cost,
             min(start_ns) AS first, max(COALESCE(end_ns, start_ns)) AS last,
             group_concat(DISTINCT replace(model, ',', ' ')) AS models,
             group_concat(DISTINCT replace(tool_name, ',', ' ')) AS tools
      FROM steps WHERE run_id=?) AS t
WHERE runs.id=?
"""


PAGE_SIZE = 16384


class StoreError(Exception):
    """A problem with the database itself (not with an imported file)."""


class AlreadyImported(Exception):
    """The file was imported (by another process) while this import waited for the lock."""


def database_problem(exc: sqlite3.Error, path: Path | None = None) -> str:
    """What went wrong with the database, in words a user can act on."""
    text = str(exc)
    if path is not None and path.is_dir():
        return "this is a folder, not a database file"
    if "readonly" in text or "read-only" in text:
        return "the database is read-only (or its folder is not writable)"
    if "locked" in text or "busy" in text:
        return "the database is busy: another tracedesk is writing to it; try again"
    if "disk is full" in text or "disk I/O" in text:
        return f"cannot write: {text}"
    if "not a database" in text or "malformed" in text:
        return "this is not a tracedesk database, or it is damaged"
    if "unable to open" in text:
        return "cannot open the database: the file or its folder cannot be written or created"
    return text


def default_db_path() -> Path:
    """``$TRACEDESK_DB`` if set, else tracedesk.db in the user's data directory."""
    env = os.environ.get("TRACEDESK_DB")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir("tracedesk", appauthor=False)) / "tracedesk.db"


class Database:
    """The connection to one tracedesk database and the write side of a Store."""

    def __init__(self, path: str | Path | None = None, scratch: bool = False):
        """``scratch``: a database thrown away after use (``check FILE``'s), written with no
        write-ahead log to copy back and no syncs (an import 8 % faster)."""
        self.path = Path(path) if path is not None else default_db_path()
        self.scratch = scratch
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun and ended explicitly below.
        # A generous busy timeout: the GUI reads while a worker import holds the write lock.
        self.conn = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self.conn.row_factory = sqlite3.Row
        self.on_busy: Callable[[], None] | None = None  # told when waiting for another writer
        self._price_ids: dict[tuple[str, str], int] = {}  # (source, date) -> prices.id
        # A new database only (an existing one keeps its size): 16 kB pages make an import's
        # inserts 11 % faster and the database 5 % smaller than 4 kB ones (bench/README.md).
        self.conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        self.conn.execute(f"PRAGMA journal_mode={'MEMORY' if scratch else 'WAL'}")
        self.conn.execute(f"PRAGMA synchronous={'OFF' if scratch else 'NORMAL'}")
        self.conn.execute("PRAGMA foreign_keys=ON")
        # Sorts (GROUP BY over every step) in a helper thread as well: 1.5 -> 1.0 s at 1M.
        self.conn.execute(f"PRAGMA threads={min(os.cpu_count() or 1, 4)}")
        self._migrate()

    def close(self) -> None:
        self.conn.close()

    @cached_property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils over the connection, for schema work only: imported when first
        needed, since it pulls in numpy (0.15 s of every CLI command's start)."""
        import sqlite_utils

        return sqlite_utils.Database(self.conn)

    # -- schema -------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return self.conn.execute("PRAGMA user_version").fetchone()[0]

    def _migrate(self) -> None:
        latest = schema.SCHEMA_VERSION
        while True:
            version = self.schema_version
            if version > latest:
                raise StoreError(
                    f"{self.path}: database schema version {version} is newer than this "
                    f"tracedesk understands ({latest}); upgrade tracedesk"
                )
            if version == latest:
                return
            with self.transaction():
                # Read again under the write lock: another connection (the window's reader
                # and an import, opening a new database together) may have just done it.
                if self.schema_version == version:
                    schema.MIGRATIONS[version](self.db)
                    self.conn.execute(f"PRAGMA user_version = {version + 1}")

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._begin()
        self._price_ids.clear()  # ids known from a transaction that may have rolled back
        # A connection that writes gets 64 MB of page cache (an import touches index pages
        # all over); one that only reads keeps SQLite's 2 MB, by which SQLite also sizes a
        # sort's memory: a GROUP BY over a million steps sorts faster in small runs
        # (1.0 s, against 1.6 s in 64 MB).
        self.conn.execute("PRAGMA cache_size=-65536")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:  # SQLite may have rolled back already (disk full)
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def _begin(self) -> None:
        """Take the write lock, waiting for another writer (another import, another
        tracedesk) to finish: ``on_busy`` is told once, and after WRITE_WAIT_S it gives up."""
        deadline = time.monotonic() + WRITE_WAIT_S
        told = False
        self.conn.execute("PRAGMA busy_timeout = 500")  # find out soon, to say so
        try:
            while True:
                try:
                    self.conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    if time.monotonic() > deadline:
                        raise StoreError(
                            f"{self.path}: another tracedesk has been writing to this database"
                            f" for over {WRITE_WAIT_S // 60} minutes; try again when it is done"
                        ) from None
                    if not told and self.on_busy is not None:
                        self.on_busy()
                    told = True
                    self.conn.execute("PRAGMA busy_timeout = 30000")
        finally:
            self.conn.execute("PRAGMA busy_timeout = 30000")

    @contextmanager
    def import_transaction(self, result: ImportResult, sha256: str) -> Iterator[int]:
        """One import: its ``imports`` row, whatever is written inside, its counts and
        warnings, committed together or not at all. Yields the import id."""
        try:
            with self.transaction():
                if self.conn.execute("SELECT 1 FROM imports WHERE sha256=?", (sha256,)).fetchone():
                    raise AlreadyImported  # by another process while this one waited
                import_id = self.conn.execute(
                    "INSERT INTO imports(path, sha256, format, imported_at) VALUES (?, ?, ?, ?)",
                    (result.path, sha256, result.format, time.strftime("%Y-%m-%dT%H:%M:%S%z")),
                ).lastrowid
                assert import_id is not None
                result.import_id = import_id
                yield import_id
                self.conn.execute(
                    "UPDATE imports SET runs=?, steps=?, skipped=?, bad_records=?,"
                    " warning_count=? WHERE id=?",
                    (result.runs, result.steps, result.skipped, result.bad_records,
                     result.warning_count, import_id),
                )  # fmt: skip
                self.conn.executemany(
                    "INSERT INTO import_warnings(import_id, message) VALUES (?, ?)",
                    [(import_id, w) for w in result.warnings],
                )
        except BaseException:
            result.import_id = None
            raise

    def add_import(self, path: str, sha256: str, format: str) -> int:
        """An ``imports`` row of its own (a live capture's); inside a transaction."""
        import_id = self.conn.execute(
            "INSERT INTO imports(path, sha256, format, imported_at) VALUES (?, ?, ?, ?)",
            (path, sha256, format, time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        ).lastrowid
        assert import_id is not None
        return import_id

    def set_import_counts(self, import_id: int, runs: int, steps: int, skipped: int) -> None:
        self.conn.execute(
            "UPDATE imports SET runs=?, steps=?, skipped=? WHERE id=?",
            (runs, steps, skipped, import_id),
        )

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    # -- runs and steps -----------------------------------------------------------------

    def insert_run(
        self, run: Run, steps: list[Step], incidents: list[Incident], import_id: int
    ) -> None:
        """A new run with its analysed steps and incidents, each row written once."""
        self.conn.execute(INSERT_RUN_SQL, run_row(run, steps, import_id))
        rows = (step_row(s, import_id, self.price_id(s.cost_parts)) for s in steps)
        self.conn.executemany(INSERT_STEP_SQL, with_nulls(rows))
        self.conn.executemany(INSERT_INCIDENT_SQL, [incident_row(i) for i in incidents])

    def insert_rows(self, run_row: list, step_rows: list[list], incident_rows: list[list],
                    import_id: int) -> bool:  # fmt: skip
        """A new run as a worker process made its rows: its steps' rows carry the key of
        their price (``price_key``) where the id goes, and no import id. False, with
        nothing written, when the run is stored already (found so: not looked up first)."""
        run_row[-1] = import_id
        try:
            self.conn.execute(INSERT_RUN_SQL, run_row)
        except sqlite3.IntegrityError:
            if self.conn.execute("SELECT 1 FROM runs WHERE id=?", run_row[:1]).fetchone():
                return False
            raise
        self.conn.executemany(INSERT_STEP_SQL, bindable(step_rows, import_id, self._price_id))
        self.conn.executemany(INSERT_INCIDENT_SQL, incident_rows)
        return True

    def update_run(self, run: Run, steps: list[Step], incidents: list[Incident],
                   changed: Iterable[Step] | None = None) -> None:  # fmt: skip
        """A stored run analysed again: its totals, its steps' tree and costs (of the
        ``changed`` steps only, when given), its incidents."""
        self.conn.execute(UPDATE_RUN_SQL, (*run_row(run, steps, None)[1:-1], run.id))
        self.conn.executemany(
            UPDATE_STEP_SQL,
            ((s.parent_id, s.depth, *self.cost_values(s.cost, s.cost_source, s.cost_parts),
              json_text(s.attributes), s.run_id, s.id)
             for s in (steps if changed is None else changed)),
        )  # fmt: skip
        self.conn.execute("DELETE FROM incidents WHERE run_id=?", (run.id,))
        self.conn.executemany(INSERT_INCIDENT_SQL, [incident_row(i) for i in incidents])

    def insert_steps_once(self, steps: Iterable[Step], import_id: int) -> int:
        """Insert the steps not stored yet, in one statement; the stored ones are kept as
        they are. Returns how many were added."""
        rows = [step_row(s, import_id, self.price_id(s.cost_parts)) for s in steps]
        before = self.conn.total_changes  # after any new prices row
        self.conn.executemany(INSERT_STEP_SQL.replace("INSERT", "INSERT OR IGNORE", 1), rows)
        return self.conn.total_changes - before

    def update_running_totals(self, run_ids: Iterable[str]) -> None:
        """A run's counts, tokens, times and cost summed from its stored steps by SQL, while
        it is still arriving (its full analysis comes when it is quiet)."""
        self.conn.executemany(RUNNING_TOTALS_SQL, ((r, r) for r in run_ids))

    def ensure_run(self, run_id: str, source_format: str, import_id: int) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO runs(id, source_format, import_id) VALUES (?, ?, ?)",
            (run_id, source_format, import_id),
        )

    def upsert_run_record(self, run: Run, import_id: int) -> None:
        """A run record for a run that may be stored: what is stored wins, the record
        only fills gaps."""
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
             run.end_ns, str(run.status), json_text(run.attributes or {}), import_id),
        )  # fmt: skip

    def insert_new_steps(
        self, steps: Iterable[Step], import_id: int
    ) -> tuple[int, int, list[str], int]:
        """Insert the steps that are not stored yet. Returns how many were added, how many
        an earlier import had stored already, the ids this import repeated, and how many of
        the stored ones differ from the ones given (the stored ones are kept)."""
        added, skipped, repeated, differing = 0, 0, [], 0
        for step in steps:
            try:
                self.conn.execute(
                    INSERT_STEP_SQL, step_row(step, import_id, self.price_id(step.cost_parts))
                )
                added += 1
            except sqlite3.IntegrityError:
                stored = self.conn.execute(
                    "SELECT import_id, kind, name, start_ns, end_ns, status, input_tokens,"
                    " output_tokens FROM steps WHERE run_id=? AND id=?",
                    (step.run_id, step.id),
                ).fetchone()
                if stored is not None and stored[0] == import_id:
                    repeated.append(step.id)
                    continue
                skipped += 1
                given = (str(step.kind), step.name, step.start_ns, step.end_ns, str(step.status),
                         step.input_tokens, step.output_tokens)  # fmt: skip
                differing += stored is not None and tuple(stored[1:]) != given
        return added, skipped, repeated, differing

    # -- costs and incidents of stored runs ---------------------------------------------

    def price_id(self, parts: CostParts | None) -> int | None:
        """The id of the price a cost used (its source and date), added when new."""
        key = price_key(parts)
        return None if key is None else self._price_id(*key)

    def _price_id(self, source: str, date: str, label: str | None) -> int:
        found = self._price_ids.get((source, date))
        if found is None:
            self.conn.execute("INSERT OR IGNORE INTO prices(source, date, label) VALUES (?, ?, ?)",
                              (source, date, label))  # fmt: skip
            found = self.conn.execute(
                "SELECT id FROM prices WHERE source = ? AND date = ?", (source, date)
            ).fetchone()[0]
            self._price_ids[source, date] = found
        return found

    def cost_values(self, cost: Decimal | None, source: str | None,
                    parts: CostParts | None) -> tuple:  # fmt: skip
        """The values of COST_SQL."""
        return (to_pusd(cost), source, *(parts or NO_PARTS)[:PARTS], self.price_id(parts))

    def write_costs(self, steps: Iterable[tuple], runs: Iterable[tuple]) -> None:
        """Steps: (cost, source, parts, run id, step id); runs: (cost, unpriced, run id);
        costs are Decimals or None."""
        self.conn.executemany(
            f"UPDATE steps SET {COST_SQL} WHERE run_id=? AND id=?",
            ((*self.cost_values(cost, source, parts), run_id, step_id)
             for cost, source, parts, run_id, step_id in steps),
        )  # fmt: skip
        self.conn.executemany(
            "UPDATE runs SET cost_pusd=?, unpriced_steps=? WHERE id=?",
            ((to_pusd(cost), unpriced, run_id) for cost, unpriced, run_id in runs),
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
            INSERT_INCIDENT_SQL, [incident_row(i) for found in by_run.values() for i in found]
        )
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

    # -- deleting runs ------------------------------------------------------------------

    def delete_runs(self, run_ids: Iterable[str]) -> int:
        """Delete runs with their steps and incidents (inside a transaction); imports that
        no longer brought anything are forgotten, so their files can be imported again.
        The search index follows by trigger. Returns how many runs were deleted."""
        ids = orjson.dumps(list(run_ids)).decode()
        conn = self.conn
        before = conn.total_changes
        deleted = conn.execute(
            "DELETE FROM runs WHERE id IN (SELECT value FROM json_each(?))", (ids,)
        ).rowcount
        if conn.total_changes == before:
            return 0
        conn.execute(
            "DELETE FROM imports WHERE id NOT IN (SELECT import_id FROM runs"
            " WHERE import_id IS NOT NULL) AND NOT EXISTS (SELECT 1 FROM steps"
            " WHERE steps.import_id = imports.id)"
        )
        # New steps may take the rowids of deleted ones: they must count as not indexed.
        conn.execute(
            "UPDATE meta SET value = min(CAST(value AS INTEGER),"
            " (SELECT coalesce(max(rowid), 0) FROM steps)) WHERE key = ?",
            (INDEXED_META_KEY,),
        )
        return deleted

    # -- the search index ---------------------------------------------------------------

    def set_search_index(self, on: bool) -> None:
        """Turn the full-text index on (it is built on the next search) or off (dropped:
        a search then scans with LIKE). Takes its own transaction."""
        with self.transaction():
            exists = self.db["steps_fts"].exists()
            if on and not exists:
                schema.create_search_index(self.db)
            elif not on and exists:
                schema.drop_search_index(self.db)
            self.set_meta(SEARCH_META_KEY, "on" if on else "off")

    def index_steps(
        self,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        in_transaction: bool = False,
    ) -> int:
        """Add the steps not in the full-text index yet, in rowid order, ``INDEX_CHUNK``
        at a time, each chunk committed with the rowid reached (so a cancel or a crash
        keeps what was done), reporting (steps indexed, steps to index). Inside an open
        transaction (``in_transaction``) everything goes into it. Returns how many steps
        were indexed; none when the index is off."""
        columns = ", ".join(FTS_COLUMNS)
        insert = (
            f"INSERT INTO steps_fts(rowid, {columns}) SELECT rowid, {columns} FROM steps"
            " WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
        )
        done, total = 0, None
        while True:
            with self.transaction() if not in_transaction else _no_transaction():
                state = self._index_state()
                if state is None:
                    return done
                indexed, last = state
                if total is None:
                    total = self.conn.execute(
                        "SELECT count(*) FROM steps WHERE rowid > ?", (indexed,)
                    ).fetchone()[0]
                if indexed >= last:
                    return done
                upto = self.conn.execute(
                    "SELECT max(rowid) FROM (SELECT rowid FROM steps WHERE rowid > ?"
                    " ORDER BY rowid LIMIT ?)",
                    (indexed, INDEX_CHUNK),
                ).fetchone()[0]
                done += self.conn.execute(insert, (indexed, upto)).rowcount
                self.set_meta(INDEXED_META_KEY, str(upto))
            if progress is not None:
                progress(min(done, total), total)
            if cancelled is not None and cancelled():
                return done

    def search_index_current(self) -> bool:
        """The index is on and holds every step: new steps can be indexed as they are
        written (a backlog is built on the next search instead, with progress)."""
        state = self._index_state()
        return state is not None and state[0] >= state[1]

    def _index_state(self) -> tuple[int, int] | None:
        """(rowid indexed up to, last rowid of steps), or None when the index is off."""
        row = self.conn.execute(
            "SELECT CAST(value AS INTEGER) FROM meta WHERE key = ?", (INDEXED_META_KEY,)
        ).fetchone()
        if row is None:
            return None
        last = self.conn.execute("SELECT coalesce(max(rowid), 0) FROM steps").fetchone()[0]
        return row[0], last


@contextmanager
def _no_transaction() -> Iterator[None]:
    yield
