from __future__ import annotations

import gzip
import io
import os
import shutil
import sys
from importlib.resources import as_file

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracedesk.core.export import write_native
from tracedesk.core.importers import detect
from tracedesk.core.importers.base import INVALID_DATE, TraceFormatError, parse_time
from tracedesk.core.ingest import ImportCancelled, import_file
from tracedesk.core.store import Store
from tracedesk.core.store.schema import PART_COLUMNS
from tracedesk.resources import demo_traces

from .conftest import DEMO_STEPS, FIXTURES, HEADER, REAL_FIXTURES, native_run, snapshot, write_jsonl


@pytest.fixture
def demo_path():
    with as_file(demo_traces()) as path:
        yield path


def all_rows(store: Store):
    runs = [
        (
            r.id,
            r.name,
            r.request,
            r.start_ns,
            r.end_ns,
            r.status,
            r.attributes,
            r.step_count,
            r.input_tokens,
            r.reported_cost,
        )
        for r in store.runs()
    ]
    steps = sorted(
        (
            tuple(getattr(s, f) for f in s.__dataclass_fields__)
            for r in store.runs()
            for s in store.steps(r.id)
        ),
        key=repr,
    )
    return runs, steps


def test_demo_file_imports(store, demo_path):
    result = import_file(store, demo_path)
    assert (result.format, result.runs, result.steps, result.warning_count) == (
        "tracedesk",
        30,
        DEMO_STEPS,
        0,
    )
    assert store.counts() == {"runs": 30, "steps": DEMO_STEPS, "imports": 1}
    scenarios = {r.attributes["scenario"] for r in store.runs()}
    assert scenarios == {"healthy", "retry_storm", "oscillation", "runaway", "error"}


def test_same_file_again_is_a_no_op(store, demo_path, tmp_path):
    import_file(store, demo_path)
    before = snapshot(store)
    copy = shutil.copy(demo_path, tmp_path / "renamed.jsonl")
    assert import_file(store, copy).already_imported
    assert snapshot(store) == before


def test_same_runs_from_another_file_are_skipped(store, demo_path, tmp_path):
    import_file(store, demo_path)
    before = all_rows(store)
    some = [r.id for r in store.runs()[:3]]
    with (tmp_path / "subset.jsonl").open("wb") as out:
        write_native(store, some, out)
    result = import_file(store, tmp_path / "subset.jsonl")
    assert result.steps == 0 and result.skipped == sum(store.get_run(i).step_count for i in some)
    assert all_rows(store) == before


def test_round_trip_is_lossless(tmp_path, demo_path):
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        import_file(a, demo_path)
        with (tmp_path / "out.jsonl").open("wb") as out:
            write_native(a, [r.id for r in a.runs()], out)
        import_file(b, tmp_path / "out.jsonl")
        assert all_rows(a) == all_rows(b)


def test_gzip_file_imports(store, tmp_path, demo_path):
    packed = tmp_path / "demo.jsonl.gz"
    packed.write_bytes(gzip.compress(demo_path.read_bytes()))
    assert import_file(store, packed).steps == DEMO_STEPS


def test_progress_is_reported(store, demo_path):
    seen = []
    import_file(store, demo_path, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1][0] == seen[-1][1] == demo_path.stat().st_size


def test_cancel_rolls_back(store, demo_path, tmp_path):
    import_file(store, write_jsonl(tmp_path / "first.jsonl", native_run()))
    before = snapshot(store)
    with pytest.raises(ImportCancelled):
        import_file(store, demo_path, cancelled=lambda: True)
    assert snapshot(store) == before


def test_cancel_of_a_file_in_parts_rolls_back_and_stops_the_workers(tmp_path, monkeypatch):
    import multiprocessing

    import tracedesk.core.ingest as ingest_module

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(ingest_module, "PARALLEL_BYTES", 0)
    path = write_jsonl(tmp_path / "batched.jsonl", _batched_traces(40))
    with Store(tmp_path / "a.db") as store:
        import_file(store, write_jsonl(tmp_path / "first.jsonl", native_run()))
        before = snapshot(store)
        with pytest.raises(ImportCancelled):
            import_file(store, path, cancelled=lambda: True)
        assert snapshot(store) == before
    assert multiprocessing.active_children() == []


def test_detection_reads_content_not_names():
    assert detect(orjson.dumps(HEADER) + b"\n") == "tracedesk"
    assert detect(b'{"type":"run","id":"x"}\n') == "tracedesk"
    assert detect(b"hello world") is None


@pytest.mark.parametrize(
    ("value", "ns"),
    [
        ("1760000000000000000", 1_760_000_000_000_000_000),
        (1_760_000_000_000_000_000, 1_760_000_000_000_000_000),
        ("2026-03-01T10:00:00.123456+00:00", 1_772_359_200_123_456_000),
        ("2026-03-01T10:00:00.123456", 1_772_359_200_123_456_000),
        ("2026-03-01T11:00:00.123456789+01:00", 1_772_359_200_123_456_789),
        ("2026-03-01T10:00:00Z", 1_772_359_200_000_000_000),
        (1_772_359_200.5, 1_772_359_200_500_000_000),
        (1_772_359_200_123, 1_772_359_200_123_000_000),
    ],
)
def test_parse_time(value, ns):
    assert parse_time(value) == ns


@pytest.mark.parametrize("value", ["inf", "1e400", "0000-01-01T00:00:00Z"])
def test_values_that_are_no_time_are_refused(value):
    with pytest.raises(ValueError, match=r"not a time|out of range"):
        parse_time(value)


@pytest.mark.parametrize(
    "value", ["2025-02-30T10:00:00Z", "2025-13-01T00:00:00Z", "2025-01-01T24:00:00Z"]
)
def test_dates_that_do_not_exist_are_unknown_not_moved(value):
    """30 February is not quietly 2 March: the time is unknown (and the import warns)."""
    assert parse_time(value) is None


@given(
    st.integers(1, 9999),
    st.integers(0, 14),
    st.integers(0, 32),
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 61),
    st.sampled_from(["Z", "", "+05:30", "-0100"]),
)
@settings(max_examples=300, deadline=None)
def test_iso_times_as_datetime_reads_them(year, month, day, hour, minute, second, offset):
    """Each day's start is remembered once worked out: any date, existing or not, on any
    day seen before or not, gives what datetime gives (None where there is no such date)."""
    import datetime

    text = f"{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.5{offset}"
    try:
        # A leap second (:60) is the second after :59, as timegm counts it.
        moment = datetime.datetime.fromisoformat(
            text.replace("-0100", "-01:00").replace(":60.", ":59.")
        )
    except ValueError:  # no such date or time
        expected = None
    else:
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        leap = 1_000_000_000 if second == 60 else 0
        delta = moment - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
        expected = (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + leap + 500_000_000
    for _ in range(2):  # worked out, then remembered
        assert parse_time(text) == expected


@pytest.mark.parametrize("in_reader_process", [False, True])
def test_a_step_dated_30_february_is_kept_with_a_warning_naming_it(
    store, tmp_path, monkeypatch, in_reader_process
):
    """Issue 14: an invalid calendar date is a warning naming the step, not a bad record;
    the step keeps an unknown time and the text it had, whichever process read it."""
    import tracedesk.core.ingest as ingest_module

    real = REAL_FIXTURES / "langfuse" / "langfuse_pydantic-ai-tools-2025-12-04.trace.json"
    document = orjson.loads(real.read_bytes())
    victim = document["observations"][1]
    victim["startTime"] = "2025-02-30T14:51:26.132Z"
    path = tmp_path / "feb30.json"
    path.write_bytes(orjson.dumps(document))
    if in_reader_process:
        monkeypatch.setattr(ingest_module, "PARALLEL_BYTES", 0)
    result = import_file(store, path)
    run_id = document["trace"]["id"]
    assert result.steps == len(document["observations"]) and result.bad_records == 0
    assert result.warnings == [
        f"run {run_id}: step {victim['id']!r} has times that are not valid dates"
        " ('2025-02-30T14:51:26.132Z'); left unknown"
    ]
    step = store.step(run_id, victim["id"])
    assert step.start_ns is None and step.end_ns is not None
    assert step.attributes[INVALID_DATE] == ["2025-02-30T14:51:26.132Z"]
    others = [s for s in store.steps(run_id) if s.id != victim["id"]]
    assert all(s.start_ns is not None and INVALID_DATE not in s.attributes for s in others)


def test_an_invalid_date_in_a_skipped_record_is_not_pinned_on_the_next(store, tmp_path):
    lines = native_run("r1")
    lines[3]["start_ns"] = "2025-02-30T10:00:00Z"
    lines[3]["input_tokens"] = "many"  # and the record is bad for another reason too
    lines[3]["kind"] = 7
    result = import_file(store, write_jsonl(tmp_path / "a.jsonl", lines), skip_bad=True)
    assert result.bad_records == 1
    assert all(INVALID_DATE not in s.attributes for s in store.steps("r1"))


# -- bad input: a clear message naming file and line, and the database unchanged ----


def expect_failure(store, path, match):
    before = snapshot(store)
    with pytest.raises(TraceFormatError, match=match) as info:
        import_file(store, path)
    assert str(path) in str(info.value)
    assert snapshot(store) == before
    return info.value


@pytest.fixture
def seeded(store, tmp_path):
    import_file(store, write_jsonl(tmp_path / "seed.jsonl", native_run("seed")))
    return store


def test_malformed_json_line(seeded, tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [orjson.dumps(r) for r in native_run()]
    lines[2] = b'{"type": "step", "id": '
    path.write_bytes(b"\n".join(lines) + b"\n")
    error = expect_failure(seeded, path, "line 3: malformed JSON")
    assert error.where == "line 3"


def test_truncated_last_line(seeded, tmp_path):
    path = tmp_path / "cut.jsonl"
    data = b"".join(orjson.dumps(r) + b"\n" for r in native_run())
    path.write_bytes(data[:-15])
    expect_failure(seeded, path, "line 5: last line is truncated")


def test_missing_required_field(seeded, tmp_path):
    records = native_run()
    del records[3]["run_id"]
    expect_failure(
        seeded,
        write_jsonl(tmp_path / "m.jsonl", records),
        "line 4: missing required field 'run_id'",
    )


def test_wrong_field_type(seeded, tmp_path):
    records = native_run()
    records[3]["input_tokens"] = "lots"
    expect_failure(
        seeded, write_jsonl(tmp_path / "t.jsonl", records), "line 4: field 'input_tokens'"
    )


def test_non_utf8_file(seeded, tmp_path):
    path = tmp_path / "latin1.jsonl"
    lines = [orjson.dumps(r) for r in native_run()]
    lines[3] = lines[3].replace(b'"call 1"', b'"caf\xe9"')
    path.write_bytes(b"\n".join(lines) + b"\n")
    expect_failure(seeded, path, "line 4: not valid UTF-8")


def test_empty_file(seeded, tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    expect_failure(seeded, tmp_path / "empty.jsonl", "empty")


def test_header_only_file(seeded, tmp_path):
    expect_failure(seeded, write_jsonl(tmp_path / "h.jsonl", [HEADER]), "no runs")


def test_unknown_format(seeded, tmp_path):
    (tmp_path / "x.txt").write_text("just some notes\n")
    expect_failure(seeded, tmp_path / "x.txt", "not a trace format")


def test_skip_bad_counts_and_continues(store, tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [orjson.dumps(r) for r in native_run(steps=4)]
    lines[3] = b"{oops"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = import_file(store, path, skip_bad=True)
    assert (result.steps, result.bad_records) == (3, 1)
    assert "line 4" in result.warnings[0]


def test_missing_parent_is_attached_to_root(store, tmp_path):
    records = native_run()
    records[3]["parent_id"] = "ghost"
    result = import_file(store, write_jsonl(tmp_path / "o.jsonl", records))
    step = next(s for s in store.steps("r1") if s.id == "s1")
    assert step.parent_id is None and step.depth == 0
    assert step.attributes["tracedesk.lost_parent_id"] == "ghost"
    assert result.warning_count == 1 and "missing parent" in result.warnings[0]
    assert store.import_warnings(result.import_id) == result.warnings


def test_duplicate_step_ids_keep_the_first(store, tmp_path):
    records = native_run()
    records.append({**records[3], "name": "second copy"})
    result = import_file(store, write_jsonl(tmp_path / "d.jsonl", records))
    assert result.steps == 3 and "duplicate step id 's1'" in result.warnings[0]
    assert next(s for s in store.steps("r1") if s.id == "s1").name == "call 1"


def test_parent_cycle_is_broken(store, tmp_path):
    records = native_run(steps=1)
    records += [
        {"type": "step", "run_id": "r1", "id": "a", "parent_id": "c", "kind": "tool"},
        {"type": "step", "run_id": "r1", "id": "b", "parent_id": "a", "kind": "tool"},
        {"type": "step", "run_id": "r1", "id": "c", "parent_id": "b", "kind": "tool"},
        {"type": "step", "run_id": "r1", "id": "d", "parent_id": "c", "kind": "tool"},
    ]
    result = import_file(store, write_jsonl(tmp_path / "c.jsonl", records))
    steps = {s.id: s for s in store.steps("r1")}
    roots = [s for s in steps.values() if s.parent_id is None]
    assert len(roots) == 2 and any("cycle" in w for w in result.warnings)
    # Every step now reaches a root, and depths follow the parent links.
    for step in steps.values():
        if step.parent_id is not None:
            assert step.depth == steps[step.parent_id].depth + 1


def test_50_mb_payload_is_stored_whole(store, tmp_path):
    payload = "x" * (50 * 1024 * 1024)
    records = native_run()
    records[3]["output"] = payload
    import_file(store, write_jsonl(tmp_path / "big.jsonl", records))
    step = next(s for s in store.steps("r1") if s.id == "s1")
    assert step.output == payload
    out = io.BytesIO()
    write_native(store, ["r1"], out)
    assert payload.encode() in out.getvalue()


def test_a_reader_process_gives_the_same_import(tmp_path, monkeypatch):
    """Big files are parsed in a second process: same rows, same errors, same warnings."""
    import tracedesk.core.ingest as ingest_module

    sources = [
        FIXTURES / "real" / "otlp" / "monocle_trace2.console.json",
        FIXTURES / "recorded" / "langsmith" / "tool_error.multipart",
        FIXTURES / "recorded" / "otel-genai" / "retry_storm.pb",
        FIXTURES / "real" / "other" / "any-agent_GOOGLE_trace.json",  # 128-bit ids: pickled
        FIXTURES / "recorded" / "langsmith" / "anthropic_cache_1h.multipart",  # cost parts
        # Loops found alike, though the reader's payloads reach the detectors as JSON text.
        *sorted((FIXTURES / "recorded" / "openai-agents").glob("*.jsonl")),
        *sorted((FIXTURES / "recorded" / "otel-genai").glob("*.pb")),
        *sorted((FIXTURES / "real" / "langfuse").glob("*.json")),
    ]
    costs = ("SELECT s.run_id, s.id, cost_pusd, cost_source, " + ", ".join(PART_COLUMNS)
             + ", p.source, p.date FROM steps AS s LEFT JOIN prices AS p ON p.id = s.price_id"
             " ORDER BY s.run_id, s.id")  # fmt: skip
    dumps = {}
    for parallel in (False, True):
        monkeypatch.setattr(ingest_module, "PARALLEL_BYTES", 0 if parallel else 1 << 40)
        with Store(tmp_path / f"{parallel}.db") as store:
            results = [import_file(store, path) for path in sources]
            dumps[parallel] = (
                [(r.runs, r.steps, r.warnings) for r in results],
                [(run, store.steps(run.id), store.incidents(run.id)) for run in store.runs()],
                [tuple(row) for row in store.conn.execute(costs)],  # priced by the reader
            )
    assert dumps[True] == dumps[False]
    assert any(row[4] for row in dumps[True][2])  # some input was priced part by part
    assert sum(len(incidents) for _, _, incidents in dumps[True][1]) >= 8
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes((FIXTURES / "formats" / "otlp_genai.jsonl").read_bytes() + b"{oops\n")
    monkeypatch.setattr(ingest_module, "PARALLEL_BYTES", 0)
    with Store(tmp_path / "bad.db") as store:
        with pytest.raises(TraceFormatError, match=r"bad\.jsonl: line \d+: malformed JSON"):
            import_file(store, bad)
        assert store.runs() == []
        result = import_file(store, bad, skip_bad=True)
        assert result.bad_records == 1 and "skipped" in result.warnings[0]
    packed = tmp_path / "bad.jsonl.gz"  # not cut in parts: one reader process reads it
    packed.write_bytes(gzip.compress(bad.read_bytes()))
    with Store(tmp_path / "packed.db") as store:
        with pytest.raises(TraceFormatError, match=r"bad\.jsonl\.gz: line \d+: malformed JSON"):
            import_file(store, packed)
        assert store.runs() == []


def test_reimported_ids_with_other_content_and_backwards_times_are_warned(store, tmp_path):
    first = write_jsonl(tmp_path / "a.jsonl", native_run("r1"))
    import_file(store, first)
    changed = native_run("r1")
    changed[3]["name"] = "a different call"  # same ids, other content, from another file
    changed[4]["end_ns"] = changed[4]["start_ns"] - 2_000_000_000  # ends before it starts
    result = import_file(store, write_jsonl(tmp_path / "b.jsonl", changed))
    assert result.skipped == 3 and result.steps == 0
    assert "run r1: 2 steps already present with different content; kept the first" in (
        result.warnings)  # fmt: skip
    assert store.step("r1", "s1").name == "call 1"
    later = native_run("r2")
    later[3]["end_ns"] = later[3]["start_ns"] - 2_000_000_000
    result = import_file(store, write_jsonl(tmp_path / "c.jsonl", later))
    assert "run r2: step 's1' ends before it starts (2 s earlier)" in result.warnings


def test_a_decompression_bomb_is_refused_early(store, tmp_path, monkeypatch):
    import tracedesk.core.importers.streams as streams

    monkeypatch.setattr(streams, "MIN_LIMIT", 1 << 20)
    bomb = tmp_path / "bomb.json.gz"
    bomb.write_bytes(gzip.compress(b'{"resourceSpans": [' + b" " * (8 << 20) + b"]}", 9))
    before = snapshot(store)
    with pytest.raises(TraceFormatError, match=r"bomb\.json\.gz: file: cannot read: it "
                       r"decompresses to more than 1 MB \(100x its size\)"):  # fmt: skip
        import_file(store, bomb)
    assert snapshot(store) == before
    monkeypatch.setenv("TRACEDESK_MAX_RATIO", "100000")  # the override lets it through
    with pytest.raises(TraceFormatError, match="contains no runs or steps"):
        import_file(store, bomb)


@pytest.mark.parametrize("cost", ["1e8", "-5000000", "NaN", "Infinity"])
def test_an_impossible_reported_cost_is_a_bad_record(store, tmp_path, cost):
    """Costs are stored as 64-bit pico-dollars: a step's cost beyond a million dollars is
    refused with the field named, never an overflow deep in the database."""
    records = native_run("r1")
    records[3]["reported_cost"] = cost
    with pytest.raises(TraceFormatError, match="line 4: reported cost is not a plausible amount"):
        import_file(store, write_jsonl(tmp_path / "cost.jsonl", records))
    assert store.runs() == []


def _otlp_line(spans: list[dict]) -> dict:
    return {"resourceSpans": [{"resource": {"attributes": []},
                               "scopeSpans": [{"scope": {"name": "t"}, "spans": spans}]}]}  # fmt: skip


def _span(trace: int, span: str, parent: str | None, name: str, start: int, error: bool = False):
    attributes = [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                  {"key": "gen_ai.tool.name", "value": {"stringValue": "search"}},
                  {"key": "gen_ai.tool.call.arguments",
                   "value": {"stringValue": '{"q": "same"}'}}]  # fmt: skip
    return {
        "traceId": f"{trace + 1:032x}", "spanId": span, "name": name, "kind": 1,
        **({"parentSpanId": parent} if parent else {}),
        "startTimeUnixNano": str(1_760_000_000_000_000_000 + start * 10**9),
        "endTimeUnixNano": str(1_760_000_000_000_000_000 + start * 10**9 + 5 * 10**8),
        "status": {"code": 2 if error else 1}, "attributes": attributes,
    }  # fmt: skip


def _batched_traces(count: int) -> list[dict]:
    """OTLP lines as a batch exporter writes them: spans end (and are exported) before their
    parent, so every trace has its children on one line and the rest on the next, with the
    root last; one child is exported twice, named differently, and one has a parent that
    was never exported."""
    lines = []
    for line in range(count + 1):
        spans = []
        if line < count:  # the first half of trace `line`
            spans += [_span(line, f"{line:08x}{i:08x}", f"{line:08x}00000001", f"search {i}", i)
                      for i in range(2, 6)]  # fmt: skip
            spans.append(_span(line, f"{line:08x}00000009", f"{line:08x}00000001", "first", 9))
            spans.append(_span(line, f"{line:08x}0000000a", "ffffffffffffffff", "orphan", 10))
        if line > 0:  # the rest of trace `line - 1`, its root last, failed in every third
            trace = line - 1
            spans += [_span(trace, f"{trace:08x}{i:08x}", f"{trace:08x}00000001", f"search {i}", i)
                      for i in range(6, 9)]  # fmt: skip
            spans.append(_span(trace, f"{trace:08x}00000009", f"{trace:08x}00000001", "again", 9))
            spans.append(_span(trace, f"{trace:08x}00000001", None, f"agent {trace}", 0,
                               error=trace % 3 == 0))  # fmt: skip
        lines.append(_otlp_line(spans))
    return lines


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_a_file_read_in_parts_gives_the_same_import(tmp_path, monkeypatch, workers):
    """A big JSON Lines file is cut into parts, each read, gathered and analysed by a worker
    process. Runs cut in two at a part's edge are merged: the same rows, costs, incidents,
    names, statuses and warnings as one reader, and the first copy of a step is kept."""
    import tracedesk.core.ingest as ingest_module

    monkeypatch.setattr(os, "cpu_count", lambda: workers)
    path = write_jsonl(tmp_path / "batched.jsonl", _batched_traces(40))
    insert_new_steps = Store.insert_new_steps  # what a merge of a run cut in two writes
    merged = 0

    def counted(store, *args):
        nonlocal merged
        merged += 1
        return insert_new_steps(store, *args)

    dumps = {}
    for in_parts in (False, True):
        monkeypatch.setattr(ingest_module, "PARALLEL_BYTES", 0 if in_parts else 1 << 40)
        monkeypatch.setattr(Store, "insert_new_steps", counted if in_parts else insert_new_steps)
        with Store(tmp_path / f"{in_parts}.db") as store:
            result = import_file(store, path)
            dumps[in_parts] = (
                (result.runs, result.steps, result.skipped, sorted(result.warnings)),
                [(run, store.steps(run.id), store.incidents(run.id)) for run in store.runs()],
                store.conn.execute("SELECT count(*) FROM steps").fetchone()[0],
            )
    assert dumps[True] == dumps[False]
    runs = [run for run, _, _ in dumps[True][1]]
    assert len(runs) == 40 and all(run.name.startswith("agent") for run in runs)
    assert sum(run.status == "error" for run in runs) == 14
    assert all(len(steps) == 10 and steps[-2].name == "first" for _, steps, _ in dumps[True][1])
    assert sum(bool(incidents) for _, _, incidents in dumps[True][1]) == 14  # failed runs
    # A duplicate step and a missing parent warned for each run, and no more.
    assert len(dumps[True][0][3]) == 80
    assert merged == workers - 1  # a run was cut at each edge between parts


def test_runs_stored_by_an_earlier_import_are_merged_when_a_file_read_in_parts_goes_on(
    tmp_path, monkeypatch
):
    """A worker's run that is stored already fails its insert and is merged instead: the
    same as one reader, with every run's steps from both files."""
    import tracedesk.core.ingest as ingest_module

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    traces = _batched_traces(40)
    first = write_jsonl(tmp_path / "first.jsonl", traces[:30])
    later = write_jsonl(tmp_path / "later.jsonl", traces[20:])
    dumps = {}
    for in_parts in (False, True):
        with Store(tmp_path / f"{in_parts}.db") as store:
            monkeypatch.setattr(ingest_module, "PARALLEL_BYTES", 1 << 40)
            import_file(store, first)
            monkeypatch.setattr(ingest_module, "PARALLEL_BYTES", 0 if in_parts else 1 << 40)
            result = import_file(store, later)
            dumps[in_parts] = (
                (result.runs, result.steps, result.skipped, sorted(result.warnings)),
                [(run, store.steps(run.id), store.incidents(run.id)) for run in store.runs()],
            )
    assert dumps[True] == dumps[False]
    assert len(dumps[True][1]) == 40 and all(len(steps) == 10 for _, steps, _ in dumps[True][1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux pipe's size is set")
def test_a_worker_can_send_several_messages_before_the_importing_process_reads():
    """A worker that had to wait for each 64 kB to be read made the 1M-span import 10 %
    slower (bench/README.md)."""
    import multiprocessing

    from tracedesk.core import reader_process

    receiver, sender = reader_process._pipe(multiprocessing.get_context("spawn"))
    os.set_blocking(sender.fileno(), False)
    message = b"x" * (reader_process.PIPE_BYTES // 4 - 8)
    for _ in range(3):  # each would block a default pipe
        sender.send_bytes(message)
    assert receiver.recv_bytes() == message
    receiver.close()
    sender.close()


def test_an_error_in_a_part_stops_the_later_parts_whatever_they_sent_meanwhile():
    """The first part fails while the second has finished: both messages are waiting at
    once, and the second part, stopped by the first's error, must not be read again."""
    from multiprocessing import Pipe

    from tracedesk.core import reader_process
    from tracedesk.core.model import ImportResult

    class Process:
        def terminate(self) -> None:
            pass

    pipes = [Pipe(duplex=False) for _ in range(2)]
    workers = object.__new__(reader_process.Workers)  # its two processes have spoken
    workers.path, workers.parts = "spans.jsonl", 2
    workers.receivers, workers.processes = [r for r, _ in pipes], [Process(), Process()]
    pipes[0][1].send_bytes(reader_process._control("error", "line 3", "malformed JSON"))
    pipes[1][1].send_bytes(reader_process._control("done", 0, [], 0))
    with pytest.raises(TraceFormatError, match=r"spans\.jsonl: line 3: malformed JSON"):
        list(workers.packages(ImportResult(path="spans.jsonl", format="otlp")))


def test_a_bad_line_in_a_later_part_is_named_and_the_first_bad_line_wins(tmp_path, monkeypatch):
    import tracedesk.core.ingest as ingest_module

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(ingest_module, "PARALLEL_BYTES", 0)
    lines = [orjson.dumps(line) for line in _batched_traces(40)]
    late = tmp_path / "late.jsonl"
    late.write_bytes(b"\n".join([*lines[:35], b"{oops", *lines[35:]]) + b"\n")
    with Store(tmp_path / "a.db") as store:
        before = snapshot(store)
        with pytest.raises(TraceFormatError, match=r"late\.jsonl: line 36: malformed JSON"):
            import_file(store, late)
        assert snapshot(store) == before
        result = import_file(store, late, skip_bad=True)
        assert result.bad_records == 1
        assert next(w for w in result.warnings if "malformed" in w).startswith("line 36:")
    both = tmp_path / "both.jsonl"
    both.write_bytes(b"\n".join([*lines[:3], b"[1, 2", *lines[3:35], b"{oops", *lines[35:]]))
    with Store(tmp_path / "b.db") as store:
        with pytest.raises(TraceFormatError, match=r"both\.jsonl: line 4: malformed JSON"):
            import_file(store, both)
        assert store.runs() == []
