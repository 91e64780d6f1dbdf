"""``tracedesk find``, ``sessions``, ``delete`` and ``search-index`` on real fixtures."""

from __future__ import annotations

import csv
import io

import orjson
import pytest

from tracedesk.cli import main
from tracedesk.core.store import Store

from .conftest import FIXTURES

AGENTS = FIXTURES / "recorded" / "openai-agents"
LANGSMITH = FIXTURES / "recorded" / "langsmith" / "agent_tools.json"
LANGFUSE = FIXTURES / "recorded" / "langfuse-otlp" / "tool_error.otlp.json"


@pytest.fixture
def db(tmp_path, monkeypatch, capsys):
    path = tmp_path / "cli.db"
    monkeypatch.setenv("TRACEDESK_DB", str(path))
    files = [AGENTS / "retry_storm.jsonl", AGENTS / "healthy_multiturn.jsonl", LANGSMITH, LANGFUSE]
    assert main(["import", *map(str, files)]) == 0
    capsys.readouterr()
    return path


def test_find_steps_as_table_json_and_csv(db, capsys):
    assert main(["find", "tool:fetch_url status:error"]) == 0
    out = capsys.readouterr().out
    assert "fetch_url" in out and "matching step" in out
    assert main(["find", "tool:fetch_url status:error", "--format", "json"]) == 0
    found = orjson.loads(capsys.readouterr().out)
    with Store(db) as store:
        expected = {(m.run_id, m.step_id) for m in store.find_steps("tool:fetch_url status:error")}
    assert {(f["run"], f["step"]) for f in found} == expected and len(expected) >= 5
    assert all(f["kind"] == "tool" and f["status"] == "error" for f in found)
    assert main(["find", '"Service Unavailable" OR unavailable', "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and set(rows[0]) == {"run", "step", "kind", "name", "status", "cost"}


def test_find_runs(db, capsys):
    assert main(["find", "finding:retry_storm", "--runs", "--format", "json"]) == 0
    runs = orjson.loads(capsys.readouterr().out)
    with Store(db) as store:
        storms = {i.run_id for i in store.incidents() if i.kind == "retry_storm"}
    assert {r["run"] for r in runs} == storms and storms
    assert main(["find", "kind:llm", "--runs", "--limit", "1"]) == 0
    assert "1 matching run" in capsys.readouterr().out


def test_a_bad_query_is_one_line_naming_the_term(db, capsys):
    assert main(["find", "kind:llm cost>lots"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'cost>lots'" in err and "cost needs a number" in err


def test_sessions_list_and_one_session(db, capsys):
    assert main(["sessions"]) == 0
    out = capsys.readouterr().out
    assert "thread-agent-tools-0001" in out and "sess-3" in out and "2 sessions" in out
    assert main(["sessions", "sess-3"]) == 0
    out = capsys.readouterr().out
    assert "session sess-3: 1 run" in out and "report-fetch" in out
    assert main(["sessions", "nope"]) == 1


def test_delete_and_search_index_commands(db, capsys):
    assert main(["search-index", "status"]) == 0
    assert "to index on the next search" in capsys.readouterr().out
    assert main(["find", "fetch_url", "--format", "json"]) == 0  # builds the index
    before = orjson.loads(capsys.readouterr().out)
    assert main(["search-index", "status"]) == 0
    assert capsys.readouterr().out.strip() == "search index: on"
    run_id = before[0]["run"]
    assert main(["delete", run_id[:20]]) == 0
    assert "deleted 1 run" in capsys.readouterr().out
    assert main(["find", "fetch_url", "--format", "json"]) == 0
    after = orjson.loads(capsys.readouterr().out)
    assert after and run_id not in {f["run"] for f in after}
    assert main(["search-index", "off"]) == 0
    assert "off" in capsys.readouterr().out
    assert main(["find", "fetch_url", "--format", "json"]) == 0  # a LIKE scan: same steps
    assert {f["step"] for f in orjson.loads(capsys.readouterr().out)} >= {f["step"] for f in after}
    assert main(["search-index", "on"]) == 0
    assert main(["search-index", "build"]) == 0
    assert capsys.readouterr().out.strip().endswith("search index: on")
