"""The search language, the full-text index kept in step with the steps, and sessions."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracedesk.core.ingest import import_file
from tracedesk.core.search import (
    And,
    Field,
    Not,
    Or,
    SearchError,
    Text,
    compile_query,
    fts_string,
    parse,
)
from tracedesk.core.store import Store

from .conftest import FIXTURES, REAL_FIXTURES, native_run, write_jsonl

RECORDED = FIXTURES / "recorded"
AGENTS = RECORDED / "openai-agents"


# -- the parser ------------------------------------------------------------------------


def test_parser_reads_the_issue_examples():
    assert parse("error") == Text("error")
    assert parse("tool:fetch_url") == Field("tool", ":", "fetch_url")
    assert parse("model:gpt-4o*") == Field("model", ":", "gpt-4o*")
    assert parse("cost>0.01 tokens>5000 duration>2s") == And(
        (Field("cost", ">", "0.01"), Field("tokens", ">", "5000"), Field("duration", ">", "2s"))
    )
    assert parse("attr.gen_ai.provider.name=openai") == Field(
        "attr.gen_ai.provider.name", "=", "openai"
    )
    assert parse('"exact phrase"') == Text("exact phrase", phrase=True)
    assert parse("finding:retry_storm") == Field("finding", ":", "retry_storm")
    assert parse("kind:llm OR NOT status:error") == Or(
        (Field("kind", ":", "llm"), Not(Field("status", ":", "error")))
    )
    assert parse("-kind:llm (a OR b) fetch*") == And(
        (Not(Field("kind", ":", "llm")), Or((Text("a"), Text("b"))), Text("fetch", prefix=True))
    )
    assert parse('name:"plan step"') == Field("name", ":", "plan step")
    assert parse("   ") is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("cost>abc", "cost needs a number, like cost>0.01 (in 'cost>abc' at 1)"),
        ("kind:llm duration>2parsecs", "unknown unit 'parsecs'"),
        ("kind:robot", "unknown kind 'robot'"),
        ("status:fine", "unknown status 'fine'"),
        ("colour:red", "unknown field 'colour'"),
        ("tool>3", "tool is text: use tool:value"),
        ('say "hello', "a quote is not closed (in '\"hello' at 5)"),
        ("(a OR b", "a parenthesis is not closed"),
        ("a OR", "OR needs a term after it"),
        ("AND a", "unexpected 'AND'"),
        ("a )", "unexpected ')'"),
        ("()", "empty parentheses"),
        ("model:", "model needs a value after ':'"),
        ("fe*tch", "'*' can only end a word"),
        ("attr.x>big", "> needs a number"),
        ("(" * 40 + "a" + ")" * 40, "too deeply nested"),
        (" ".join(["w"] * 100), "more than 64 terms"),
    ],
)
def test_malformed_queries_get_a_one_line_message_naming_the_term(query, message):
    with pytest.raises(SearchError) as caught:
        parse(query)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_values_never_reach_the_sql_text():
    hostile = "'; DROP TABLE steps; --"
    node = parse(f'name:"{hostile}" "{hostile}" tool:%_\\')
    sql = compile_query(node)
    assert "DROP" not in sql.where and "DROP" not in (sql.match or "").replace(hostile, "")
    assert hostile in sql.params[0] and sql.match == fts_string(Text(hostile, phrase=True))
    assert "%" not in sql.where.replace("'%'", "")
    assert sql.params[-1] == "\\%\\_\\\\"  # LIKE wildcards typed by the user are escaped


def test_fts_text_is_quoted():
    assert fts_string(Text('say "hi" NEAR(x) OR y')) == '"say ""hi"" NEAR(x) OR y"'
    assert fts_string(Text("fetch", prefix=True)) == '"fetch"*'


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=80))
def test_any_text_parses_or_fails_with_a_search_error(text):
    try:
        node = parse(text)
    except SearchError as exc:
        assert "\n" not in str(exc)
        return
    compile_query(node)
    compile_query(node, fts=False)


@pytest.fixture(scope="module")
def agents_db(tmp_path_factory):
    """Every recorded OpenAI Agents SDK run, indexed."""
    path = tmp_path_factory.mktemp("search") / "agents.db"
    with Store(path) as store:
        for trace in sorted(AGENTS.glob("*.jsonl")):
            import_file(store, trace)
        assert store.search_index_state().pending > 0  # built on the first search
        store.index_steps()
    return path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_hostile_queries_run_against_a_real_database(agents_db, text):
    with Store(agents_db) as store:
        try:
            store.find_steps(text, 5)
            store.find_runs(text, 5)
        except SearchError:
            pass  # never an sqlite3 error: FTS syntax and SQL in the text are searched for


# -- searching real traces -------------------------------------------------------------


def step_keys(matches):
    return {(m.run_id, m.step_id) for m in matches}


def test_search_finds_steps_of_real_traces(agents_db):
    with Store(agents_db) as store:
        tools = store.find_steps("tool:fetch_url", 1000)
        assert tools and all(m.tool_name == "fetch_url" for m in tools)
        # A word is found in names, tool arguments and outputs alike.
        words = store.find_steps("fetch_url", 1000)
        assert step_keys(tools) < step_keys(words)
        failed = store.find_steps("tool:fetch_url status:error", 1000)
        assert failed and all(m.status == "error" for m in failed)
        storm = store.find_steps("finding:retry_storm", 1000)
        assert {m.run_name for m in storm} and step_keys(failed) <= step_keys(storm) | step_keys(
            failed
        )
        llm = store.find_steps("kind:llm", 1000)
        not_llm = store.find_steps("NOT kind:llm", 1000)
        total = store.conn.execute("SELECT count(*) FROM steps").fetchone()[0]
        assert len(llm) + len(not_llm) == total and not step_keys(llm) & step_keys(not_llm)
        either = store.find_steps("tool:fetch_url OR tool:search_docs", 1000)
        assert {m.tool_name for m in either} == {"fetch_url", "search_docs"}
        runs = store.find_runs("tool:fetch_url")
        assert {r.id for r in runs} == {m.run_id for m in tools}
        assert store.find_run_ids("finding:oscillation") == {
            i.run_id for i in store.incidents() if i.kind == "oscillation"
        }


def test_runs_of_a_word_are_the_same_from_the_index_and_run_by_run(agents_db, monkeypatch):
    """A runs search collects a word's matches from the index when they are few, else goes
    run by run, newest first: both give the same runs in the same order."""
    from tracedesk.core.store import queries

    with Store(agents_db) as store:
        for query in ("fetch_url", "Oslo", "weather kind:llm", '"Service Unavailable"', "zzzq"):
            from_index = [r.id for r in store.find_runs(query, 5)]
            monkeypatch.setattr(queries, "FEW_MATCHES", 1)
            run_by_run = [r.id for r in store.find_runs(query, 5)]
            monkeypatch.undo()
            assert from_index == run_by_run, query
            assert set(from_index) <= store.find_run_ids(query)
        assert store.find_runs("fetch_url", 5)


def test_index_and_like_scan_agree_on_words(agents_db):
    with Store(agents_db) as store:
        for query in ("fetch_url", "Oslo", "Bergen weather", "refund*", '"Service Unavailable"'):
            node = parse(query)
            fts = step_keys(store.find_steps(node, 1000))
            like = compile_query(node, fts=False)
            sql, params = store._matching(like, "SELECT s.run_id, s.id")
            scanned = {tuple(r) for r in store.conn.execute(sql, params)}
            assert fts <= scanned, query  # a LIKE finds substrings too (fetch_urls)


NARROWED = [
    "tool:fetch_url", "tool:*search*", "tool:no_such_tool", 'tool:"lookup,order"', "tool:lookup*",
    "model:gpt-4o*", "model:no_such_model", "status:error", "status:ok", "finding:retry_storm",
    "finding:*", "finding:no_such_finding", "cost>0.00001", "cost>=0", "cost>5", "cost>-1",
    "cost=0.002", "tokens>500", "tokens>=1", "tokens:120", "duration>1s", "duration>=0",
    "kind:agent", "kind:handoff", "kind:l*", "kind:*", "kind!=agent", "-tool:fetch_url",
    "tool:fetch_url status:error", "status:error tokens>10 NOT kind:llm",
    "tool:fetch_url OR status:error", "cost>0 (kind:tool OR kind:llm)",
]  # fmt: skip


def test_filters_that_look_in_few_runs_find_every_match(agents_db, tmp_path, monkeypatch):
    """A field that matches few steps is looked for only in the runs whose totals can hold
    a match (the tools and models they list, their errors, incidents, tokens, time and
    cost): that must never lose a match, also with a tool name holding a comma and a cost
    the source reported as negative (a run's total is then no bound on its steps')."""
    from tracedesk.core import search

    path = tmp_path / "narrowed.db"
    path.write_bytes(agents_db.read_bytes())
    odd = native_run("odd", steps=3)
    odd[3].update(kind="tool", tool_name="lookup,order", model=None)
    odd[4].update(reported_cost=-4, input_tokens=10)  # a refund, as a source might report it
    odd.append({**odd[4], "id": "pricey", "reported_cost": 7})
    with Store(path) as store:
        import_file(store, write_jsonl(tmp_path / "odd.jsonl", odd))
        store.index_steps()
        narrowed = 0
        for query in NARROWED:
            node = parse(query)
            pruned = compile_query(node).runs is not None
            got = (step_keys(store.find_steps(node, 10**6)), store.find_run_ids(node),
                   [r.id for r in store.find_runs(node)])  # fmt: skip
            narrowed += pruned and store._looked_in(compile_query(node)) is not None
            with monkeypatch.context() as m:
                m.setattr(search, "_runs_condition", lambda node: None)
                assert compile_query(node).runs is None
                every = (step_keys(store.find_steps(node, 10**6)), store.find_run_ids(node),
                         [r.id for r in store.find_runs(node)])  # fmt: skip
            assert got == every, query
        assert narrowed >= 15  # the narrowing did take place
        assert step_keys(store.find_steps("cost>5", 100)) == {("odd", "pricey")}
        assert ("odd", "s1") in step_keys(store.find_steps("tool:lookup,order", 100))
        # Rare filters read no whole table of steps.
        for query in ("tool:no_such_tool", "kind:handoff", "status:error", "cost>5",
                      "finding:retry_storm"):  # fmt: skip
            search = store._search_sql(query)
            sql, params = store._matching(search, "SELECT s.id", run_ids=store._looked_in(search))
            plan = " / ".join(r[3] for r in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "SCAN s" not in plan, (query, plan)


def test_numbers_compare_in_their_units(store):
    records = native_run("r1", steps=4)
    records[4].update(
        input_tokens=4000, output_tokens=2000, end_ns=records[4]["start_ns"] + 3 * 10**9
    )
    records[5]["reported_cost"] = "0.5"
    write_jsonl(trace := store.path.parent / "n.jsonl", records)
    import_file(store, trace)
    names = lambda q: sorted(m.name for m in store.find_steps(q))  # noqa: E731
    assert names("tokens>5000") == names("tokens>5k") == ["call 2"]
    assert names("duration>2s") == names("duration>=2500ms") == ["call 2"]
    assert names("cost>0.1") == names("cost>$0.25") == ["call 3"]
    assert names("cost>0.01") == ["call 2", "call 3"]  # call 2's 6k tokens of gpt-4o
    assert names("name:call* -name:*2") == ["call 1", "call 3"]


def test_attribute_terms_find_flat_nested_and_mapped_attributes(store):
    import_file(store, RECORDED / "otel-genai" / "healthy_multiturn.otlp.json")
    llm = store.find_steps("kind:llm")
    assert llm
    # gen_ai.provider.name is stored in the provider column, not among the attributes.
    assert step_keys(store.find_steps("attr.gen_ai.provider.name=openai")) == step_keys(llm)
    assert not store.find_steps("attr.gen_ai.provider.name=anthropic")
    import_file(store, AGENTS / "paging.jsonl")
    assert store.find_steps("attr.usage.requests=1")  # nested JSON in the SDK's export


# -- the index stays in step -----------------------------------------------------------


def fts_rows(store: Store, word: str) -> set[int]:
    return {r[0] for r in store.conn.execute(
        "SELECT rowid FROM steps_fts WHERE steps_fts MATCH ?", (f'"{word}"',))}  # fmt: skip


def test_index_follows_reimport_merge_and_delete(store, tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", native_run("r1", steps=3))
    import_file(store, first)
    assert len(store.find_steps("call")) == 2  # a LIKE scan while the index is behind
    store.index_steps()  # as the first search does
    assert store.search_index_state().pending == 0
    assert len(store.find_steps("call")) == 2
    # The same file again changes nothing; the same run with more steps is merged.
    import_file(store, first)
    more = native_run("r1", steps=3)
    more.append({**more[-1], "id": "extra", "name": "zebra lookup"})
    import_file(store, write_jsonl(tmp_path / "b.jsonl", more))
    store.index_steps()
    assert [m.step_id for m in store.find_steps("zebra")] == ["extra"]
    store.conn.execute("INSERT INTO steps_fts(steps_fts) VALUES ('integrity-check')")
    # A merged run's steps are rewritten (tree, costs, attributes): the index follows.
    with store.transaction():
        store.conn.execute(
            "UPDATE steps SET attributes = '{\"colour\": \"ochre\"}' WHERE id = 's1'"
        )
    assert [m.step_id for m in store.find_steps("ochre")] == ["s1"]
    import_file(store, write_jsonl(tmp_path / "c.jsonl", native_run("r2", steps=2)))
    store.index_steps()
    assert {m.run_id for m in store.find_steps("call")} == {"r1", "r2"}
    with store.transaction():
        assert store.delete_runs(["r1"]) == 1
    assert {m.run_id for m in store.find_steps("call")} == {"r2"}
    assert not store.find_steps("zebra") and not fts_rows(store, "zebra")
    store.conn.execute("INSERT INTO steps_fts(steps_fts) VALUES ('integrity-check')")
    # Deleted runs can be imported again, and are found again.
    assert not import_file(store, first).already_imported
    store.index_steps()
    assert {m.run_id for m in store.find_steps("call")} == {"r1", "r2"}
    store.conn.execute("INSERT INTO steps_fts(steps_fts) VALUES ('integrity-check')")


def test_steps_that_reuse_deleted_rowids_are_indexed(store, tmp_path):
    import_file(store, write_jsonl(tmp_path / "a.jsonl", native_run("r1", steps=3)))
    import_file(store, write_jsonl(tmp_path / "b.jsonl", native_run("r2", steps=3)))
    store.index_steps()
    with store.transaction():
        store.delete_runs(["r2"])  # the last rowids
    records = native_run("r3", steps=3)
    records[-1]["name"] = "quokka"
    import_file(store, write_jsonl(tmp_path / "c.jsonl", records))
    assert store.search_index_state().pending == 3
    store.index_steps()
    assert [m.run_id for m in store.find_steps("quokka")] == ["r3"]
    assert fts_rows(store, "quokka")


def test_index_can_be_turned_off_and_on(store, tmp_path):
    import_file(store, write_jsonl(tmp_path / "a.jsonl", native_run("r1", steps=3)))
    store.set_search_index(False)
    assert store.search_index_state().on is False
    assert not store.db["steps_fts"].exists()
    assert len(store.find_steps("call")) == 2  # a LIKE scan instead
    store.set_search_index(True)
    state = store.search_index_state()
    assert state.on and state.pending == 3
    reports: list[tuple[int, int]] = []
    assert store.index_steps(lambda done, total: reports.append((done, total))) == 3
    assert reports[-1] == (3, 3)
    assert len(store.find_steps("call")) == 2


def test_in_transaction_indexing_matches_the_lazy_index(tmp_path):
    trace = AGENTS / "retry_storm.jsonl"
    with Store(tmp_path / "inline.db") as inline, Store(tmp_path / "lazy.db") as lazy:
        import_file(inline, trace, index_search=True)
        assert inline.search_index_state().pending == 0
        import_file(lazy, trace)
        assert lazy.search_index_state().pending > 0
        lazy.index_steps()
        for query in ("fetch_url", "503", "kind:tool unavailable"):
            assert step_keys(inline.find_steps(query)) == step_keys(lazy.find_steps(query))


def test_an_old_database_gets_an_empty_index_built_on_search(tmp_path):
    old = FIXTURES / "db" / "tracedesk-schema5.db"
    if not old.exists():
        pytest.skip("no old database fixture")
    copy = tmp_path / "old.db"
    copy.write_bytes(old.read_bytes())
    with Store(copy) as store:
        state = store.search_index_state()
        assert state.on and state.pending == store.counts()["steps"] > 0
        store.index_steps()
        assert store.find_steps("kind:llm")
        store.conn.execute("INSERT INTO steps_fts(steps_fts) VALUES ('integrity-check')")


def test_a_search_never_corrupts_on_hostile_fts_syntax(agents_db):
    with Store(agents_db) as store:
        for query in ('"NEAR(a b)"', "OR_", "a:b*", '"*"', '"^x"', '"col:abc"', "*"):
            try:
                store.find_steps(query)
            except SearchError:
                pass
            except sqlite3.Error as exc:  # pragma: no cover - the failure being tested
                pytest.fail(f"{query!r}: {exc}")


# -- sessions --------------------------------------------------------------------------


def test_sessions_from_real_fixtures(store):
    import_file(store, REAL_FIXTURES / "langfuse" / "agent-prism_langfuse-1.json")
    import_file(store, REAL_FIXTURES / "langfuse" / "langfuse_google-adk-2025-08-28.trace.json")
    import_file(store, RECORDED / "langfuse-otlp" / "tool_error.otlp.json")  # session.id
    import_file(store, RECORDED / "langsmith" / "agent_tools.json")  # thread_id metadata
    sessions = {s.id: s for s in store.sessions()}
    assert set(sessions) == {
        "chat_49c4ac74-78d1-4513-98c4-0c7d3e981fd5",
        "demo-session",
        "sess-3",
        "thread-agent-tools-0001",
    }
    sess3 = sessions["sess-3"]
    [run] = store.session_runs("sess-3")
    assert (sess3.runs, sess3.steps, sess3.cost_pusd) == (1, run.step_count, store.conn.execute(
        "SELECT cost_pusd FROM runs WHERE id = ?", (run.id,)).fetchone()[0])  # fmt: skip
    assert store.find_steps("session:sess-3") and all(
        m.run_id == run.id for m in store.find_steps("session:sess-3")
    )


def test_a_session_lists_its_runs_in_order_with_totals(store, tmp_path):
    for n, start in ((1, 5_000), (2, 1_000), (3, 9_000)):
        records = native_run(f"r{n}", steps=2, session_id="conv-1" if n < 3 else "conv-2")
        for record in records[2:]:
            record["start_ns"] += start
            record["end_ns"] += start
        records[3]["reported_cost"] = f"0.0{n}"
        import_file(store, write_jsonl(tmp_path / f"{n}.jsonl", records))
    assert [r.id for r in store.session_runs("conv-1")] == ["r2", "r1"]
    session = store.session("conv-1")
    assert session is not None
    assert (session.runs, session.steps, str(session.cost)) == (2, 4, "0.03")
    assert [s.id for s in store.sessions()] == ["conv-2", "conv-1"]
