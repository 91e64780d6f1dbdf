from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracedesk.core.ingest import import_file
from tracedesk.core.model import CostParts, Step, StepKind, json_text, to_decimal
from tracedesk.core.store import SCHEMA_VERSION, Store, StoreError, default_db_path
from tracedesk.core.store import schema as store_module

from .conftest import FIXTURES, native_run, store_at_version, write_jsonl


def test_core_never_imports_qt():
    code = (
        "import sys, pkgutil, importlib, tracedesk.core as c\n"
        "for m in pkgutil.walk_packages(c.__path__, 'tracedesk.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "import tracedesk.cli\n"
        "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph', 'tracedesk.ui'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_step_is_slotted_and_knows_its_duration():
    step = Step(id="a", run_id="r", kind=StepKind.LLM, start_ns=100, end_ns=350)
    assert step.duration_ns == 250
    assert Step(id="b", run_id="r").duration_ns is None
    with pytest.raises(AttributeError):
        step.not_a_field = 1  # type: ignore[attr-defined]


def test_money_is_decimal_without_float_drift():
    assert to_decimal(0.1) + to_decimal(0.2) == Decimal("0.3")
    assert to_decimal("0.0000193") == Decimal("0.0000193")
    assert to_decimal(None) is None


def test_new_database_has_schema_wal_and_indexes(store):
    assert store.schema_version == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {
        r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert {"runs_start", "runs_name", "runs_cost", "incidents_run"} <= indexes


def test_forward_migration_keeps_data(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    with Store(path) as old:
        import_file(old, write_jsonl(tmp_path / "a.jsonl", native_run()))

    def add_note(db):
        db.execute("ALTER TABLE runs ADD COLUMN note TEXT DEFAULT 'migrated'")

    monkeypatch.setattr(store_module, "MIGRATIONS", [*store_module.MIGRATIONS, add_note])
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with Store(path) as new:
        assert new.schema_version == SCHEMA_VERSION + 1
        assert [tuple(r) for r in new.conn.execute("SELECT id, note FROM runs")] == [
            ("r1", "migrated")
        ]


def test_two_connections_create_a_new_database_together(tmp_path, monkeypatch):
    """The window's first read and an import open a new database at once: the second to
    take the write lock finds the schema made and does not make it again."""
    path = tmp_path / "new.db"
    creating, first = threading.Event(), store_module.MIGRATIONS[0]

    def slow_first(db):
        first(db)
        if threading.current_thread().name == "early":
            creating.set()
            time.sleep(0.3)  # the other connection reads the version meanwhile

    monkeypatch.setattr(store_module, "MIGRATIONS", [slow_first, *store_module.MIGRATIONS[1:]])
    opened: list[int] = []

    def open_early() -> None:
        with Store(path) as store:
            opened.append(store.schema_version)

    early = threading.Thread(name="early", target=open_early)
    early.start()
    assert creating.wait(10)
    with Store(path) as late:
        assert late.schema_version == SCHEMA_VERSION
    early.join()
    assert opened == [SCHEMA_VERSION]


def test_a_new_database_has_16k_pages_and_an_old_one_keeps_its_own(tmp_path):
    """16 kB pages (inserts, scans and cost sums faster, the file smaller: bench/README.md)
    for a new database; a database made with 4 kB pages opens and stays as it is."""
    with Store(tmp_path / "new.db") as new:
        assert new.conn.execute("PRAGMA page_size").fetchone()[0] == 16384
    old = tmp_path / "old.db"
    shutil.copy(FIXTURES / "db" / "tracedesk-schema5.db", old)
    with Store(old) as store:
        assert store.conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert store.runs()


def test_newer_database_is_refused(tmp_path):
    path = tmp_path / "future.db"
    with Store(path) as s:
        s.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_db_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("TRACEDESK_DB")
    assert default_db_path().name == "tracedesk.db"


def test_totals_and_depth_are_derived(store, tmp_path):
    import_file(store, write_jsonl(tmp_path / "a.jsonl", native_run(steps=4)))
    run = store.get_run("r1")
    assert (run.step_count, run.input_tokens, run.output_tokens) == (4, 60, 6)
    assert (run.start_ns, run.end_ns, run.status) == (1_000, 9_000, "ok")
    depths = {s.id: s.depth for s in store.steps("r1")}
    assert depths == {"root": 0, "s1": 1, "s2": 1, "s3": 1}


def test_find_run_by_prefix(store, tmp_path):
    records = native_run("abc123") + native_run("abd456")[1:]
    import_file(store, write_jsonl(tmp_path / "a.jsonl", records))
    assert store.find_run("abc").id == "abc123"
    with pytest.raises(KeyError, match="ambiguous"):
        store.find_run("ab")
    with pytest.raises(KeyError, match="no run"):
        store.find_run("zzz")


def test_store_in_tmp_path_is_a_real_file(store):
    assert Path(store.path).exists()


def test_a_version_5_database_gains_cache_write_counts(tmp_path):
    db = tmp_path / "v5.db"
    with store_at_version(db, 5) as old:
        old.conn.execute("INSERT INTO runs(id, name, input_tokens) VALUES ('r', 'old', 7)")
    with Store(db) as store:
        run = store.get_run("r")
        assert (run.name, run.input_tokens, run.cache_creation_tokens) == ("old", 7, 0)
        columns = {r[1] for r in store.conn.execute("PRAGMA table_info(steps)")}
        assert "cache_creation_tokens" in columns


def test_a_database_written_by_the_previous_release_is_upgraded(tmp_path):
    """tests/fixtures/db/tracedesk-schema5.db was written by the release before the ingest
    redesign (commit e27024a, schema 5): an Agents SDK retry storm and a Langfuse run."""
    db = tmp_path / "old.db"
    shutil.copy(FIXTURES / "db" / "tracedesk-schema5.db", db)
    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION
        runs = {run.name: run for run in store.runs()}
        claude = runs["claude.conversation"]
        assert claude.cost == Decimal("0.003582") and claude.step_count == 7
        assert sum(s.cost or 0 for s in store.steps(claude.id)) == Decimal("0.003582")
        storm = runs["Agent workflow"]
        assert storm.incident_count == 1 and storm.step_count == 19
        assert store.incidents(storm.id)[0].kind == "retry_storm"
        # The same file again changes nothing; a new one imports beside the old runs.
        again = import_file(store, FIXTURES / "recorded" / "openai-agents" / "retry_storm.jsonl")
        assert again.already_imported
        import_file(store, FIXTURES / "recorded" / "langfuse-otlp" / "anthropic_cache.pb")
        assert len(store.runs()) == 3


def test_a_second_writer_waits_its_turn_and_the_same_file_goes_in_once(tmp_path):
    """Two processes import the same file at once: one waits (and says so), one imports
    row is written, and neither shows a traceback."""
    db = tmp_path / "shared.db"
    trace = FIXTURES / "recorded" / "otel-genai" / "paging.otlp.json"
    Store(db).close()
    holder = Store(db)
    holder.conn.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    command = [sys.executable, "-m", "tracedesk", "--db", str(db), "import", str(trace)]
    second = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    assert second.poll() is None  # still waiting
    holder.conn.execute("COMMIT")
    holder.close()
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0 and "waiting for another import to finish" in err, err
    assert "1 run, 8 steps imported" in out
    third = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert third.returncode == 0 and "already imported" in third.stdout
    with Store(db) as store:
        assert store.counts()["imports"] == 1 and len(store.runs()) == 1


def test_a_v10_database_gains_one_hour_cache_writes(tmp_path):
    """Schema 11: old steps keep their costs and have no 1-hour split (NULL, not 0)."""
    db = tmp_path / "v10.db"
    with store_at_version(db, 10) as old:
        old.conn.execute("INSERT INTO runs(id, name, cache_creation_tokens) VALUES ('r', 'x', 9)")
        old.conn.execute(
            "INSERT INTO steps(run_id, id, kind, cache_creation_tokens, cost_pusd,"
            " cache_write_pusd) VALUES ('r', 's', 'llm', 9, 50, 40)"
        )
    with Store(db) as store:
        assert store.schema_version == SCHEMA_VERSION >= 11
        row = store.conn.execute(
            "SELECT cache_creation_tokens, cache_write_1h_tokens, cost_pusd, cache_write_pusd,"
            " cache_write_1h_pusd FROM steps"
        ).fetchone()
        assert tuple(row) == (9, None, 50, 40, None)
        assert store.get_run("r").cache_write_1h_tokens == 0
        # Schema 12: prices stored before have no label (their models are looked up).
        assert "label" in {c[1] for c in store.conn.execute("PRAGMA table_info(prices)")}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=4) | st.integers(-5, 5) | st.booleans(), inner, max_size=3),
    max_leaves=12,
)  # fmt: skip


@given(JSON_VALUES)
def test_json_text_reads_the_same_whatever_the_keys(value):
    """Keys are taken as text first and checked only when one is not: the text stored is
    what encoding with non-text keys allowed gives, for any keys."""
    value = [value]  # a value, not None (which is stored as NULL)
    assert json_text(value) == orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


EVERY_STEP_FIELD = {  # a different value of its type for each field (compiled, no other)
    "id": "s", "run_id": "r", "parent_id": "p", "kind": "llm", "name": "n", "start_ns": 1,
    "end_ns": 2, "status": "ok", "error": "e", "model": "m", "provider": "pr",
    "input_tokens": 3, "output_tokens": 4, "cached_input_tokens": 5, "reasoning_tokens": 6,
    "cache_creation_tokens": 7, "cache_write_1h_tokens": 8, "reported_cost": Decimal(9),
    "tool_name": "t", "tool_args": {"q": 1}, "input": "i", "output": "o",
    "attributes": {"a": 1}, "depth": 10, "cost": Decimal(11), "cost_source": "computed",
    "cost_parts": CostParts(input=12),
}  # fmt: skip


def test_steps_own_init_agrees_with_its_fields():
    """Step writes its __init__ out (compiled, the dataclass one is slow): each field in
    order, with the dataclass's default."""
    names = [f.name for f in dataclasses.fields(Step)]
    assert list(EVERY_STEP_FIELD) == names
    every = Step(*EVERY_STEP_FIELD.values())
    assert [getattr(every, name) for name in names] == list(EVERY_STEP_FIELD.values())
    least, defaults = Step("s", "r"), []
    for f in dataclasses.fields(Step)[2:]:
        has_factory = f.default_factory is not dataclasses.MISSING
        defaults.append(f.default_factory() if has_factory else f.default)
    assert [getattr(least, name) for name in names[2:]] == defaults
    assert least.attributes is not Step("s", "r").attributes  # a new dict each
