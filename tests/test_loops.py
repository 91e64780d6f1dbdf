"""Loop detection on labelled traces: precision and recall per detector and per variant must
be 1.0, on generated cases (content captured or not, flat or wrapped, four formats), on
traces recorded from the real SDKs and on the real public files."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections import defaultdict
from decimal import Decimal
from functools import cache
from pathlib import Path

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tracedesk.cli import main
from tracedesk.core.analysis.loops import (
    DETECTORS,
    Rules,
    RulesError,
    _outline,
    _same_payload,
    canonical,
    detect,
)
from tracedesk.core.analysis.loops import normal_error as normal
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.ingest import import_file
from tracedesk.core.model import EncodedJSON, Incident, Run, severity_rank
from tracedesk.core.store import Store

from .conftest import FIXTURES, store_at_version

LOOPS = FIXTURES / "loops"
LABELS = json.loads((LOOPS / "labels.json").read_text())
LABELLED_FILES = sorted(LOOPS.glob("*.jsonl"))
# Real producers: every file under real/ and recorded/, with what it must contain.
MANIFEST = json.loads((FIXTURES / "incidents.json").read_text())
REAL_FILES = sorted(
    p for p in [*(FIXTURES / "real").rglob("*.json*"), *(FIXTURES / "recorded").rglob("*")]
    if p.is_file() and p.suffix in (".json", ".jsonl", ".pb", ".multipart")
    and not p.name.endswith(".counts.json")
)  # fmt: skip
PRICING = Pricing.load(use_user_file=False)
DEFAULT_RULES = Rules.load(use_user_file=False)


@cache
def imported(path: Path, scratch: Path) -> Path:
    """A database holding one fixture file (imported once per test session)."""
    db = scratch / (re.sub(r"\W", "_", str(path.relative_to(FIXTURES))) + ".db")
    with Store(db) as store:
        import_file(store, path, pricing=PRICING, rules=DEFAULT_RULES)
    return db


@pytest.fixture(scope="session")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("loops")


def incidents_by_run(path: Path, scratch: Path) -> list[tuple[Run, list[Incident]]]:
    """Every run of a file with its incidents under the rules its case asks for."""
    out = []
    with Store(imported(path, scratch)) as store:
        for run in store.runs("start_ns ASC"):
            overrides = LABELS.get(run.name, {}).get("rules", {})
            rules = Rules.load(use_user_file=False, **overrides) if overrides else DEFAULT_RULES
            out.append((run, detect(run, store.steps(run.id), rules)))
    return out


def kinds(incidents: list[Incident]) -> set[str]:
    return {kind for incident in incidents for kind in incident.kinds}


def score(results: dict[str, dict[str, int]], variant: str, expected: set[str], found: set[str]):
    for detector in DETECTORS:
        counts = results[f"{detector:15} {variant}"]
        if detector in expected:
            counts["tp" if detector in found else "fn"] += 1
        elif detector in found:
            counts["fp"] += 1


def report(results: dict[str, dict[str, int]]) -> str:
    """Precision and recall per detector and variant; n/a where a detector had nothing to
    find and found nothing."""
    lines = [f"{'detector':15} {'variant':28} {'precision':>9} {'recall':>6}   tp  fp  fn"]
    for key, c in sorted(results.items()):
        if key.startswith("all"):
            lines.append(f"{key:44} {c['cases']} runs")
            continue
        flagged, expected = c["tp"] + c["fp"], c["tp"] + c["fn"]
        precision = f"{c['tp'] / flagged:.2f}" if flagged else "n/a"
        recall = f"{c['tp'] / expected:.2f}" if expected else "n/a"
        lines.append(f"{key:44} {precision:>9} {recall:>6} {c['tp']:4}{c['fp']:4}{c['fn']:4}")
    return "\n".join(lines)


def test_the_labelled_set_is_large_and_covers_every_detector():
    assert len(LABELS) >= 40 and len(LABELLED_FILES) == 16
    assert {d for label in LABELS.values() for d in label["expect"]} == set(DETECTORS)
    assert {d for label in LABELS.values() for d in label["expect_nocontent"]} >= {
        "retry_storm", "repeated_error", "runaway"}  # fmt: skip
    assert sum(not label["expect"] for label in LABELS.values()) >= 15  # legitimate repetition


def test_precision_and_recall_per_detector_and_variant(scratch):
    results: dict[str, dict[str, int]] = defaultdict(
        lambda: {"tp": 0, "fp": 0, "fn": 0, "cases": 0}
    )
    mistakes = []
    for path in LABELLED_FILES:
        variant = path.name.split(".")[0]  # content-flat, nocontent-wrapped, ...
        fmt = path.name.split(".", 1)[1]
        runs = incidents_by_run(path, scratch)
        assert sorted(run.name for run, _ in runs) == sorted(LABELS), path.name
        for run, incidents in runs:
            label = LABELS[run.name]
            expected = set(label["expect_nocontent" if variant.startswith("no") else "expect"])
            found = kinds(incidents)
            for row in (variant, f"{variant} {fmt}"):
                results[f"{'all':15} {row}"]["cases"] += 1
                score(results, row, expected, found)
            if found != expected:
                mistakes.append(f"{path.name} {run.name}: expected {sorted(expected)}, found "
                                f"{[(i.kind, i.message) for i in incidents]}")  # fmt: skip
    by_variant = {k: v for k, v in results.items() if len(k.split()) == 2}
    print(report(by_variant))
    assert not mistakes, "\n".join(mistakes)


def test_real_and_recorded_traces(scratch):
    """Every real public file and every recorded SDK trace, against its manifest entry."""
    listed = {str(p.relative_to(FIXTURES)) for p in REAL_FILES}
    assert listed == set(MANIFEST), "every real or recorded file needs a manifest entry"
    results: dict[str, dict[str, int]] = defaultdict(
        lambda: {"tp": 0, "fp": 0, "fn": 0, "cases": 0}
    )
    mistakes = []
    for path in REAL_FILES:
        entry = MANIFEST[str(path.relative_to(FIXTURES))]
        found = set()
        for _, incidents in incidents_by_run(path, scratch):
            found |= kinds(incidents)
        group = "recorded" if "recorded" in path.parts else "real"
        results[f"{'all':15} {group}"]["cases"] += 1
        score(results, group, set(entry["expect"]), found)
        if found != set(entry["expect"]):
            mistakes.append(
                f"{path.relative_to(FIXTURES)}: expected {entry['expect']}, found {sorted(found)}"
            )
    print(report(results))
    assert not mistakes, "\n".join(mistakes)


def test_waste_adds_up_and_no_step_counts_twice(scratch):
    for path in [*LABELLED_FILES, *REAL_FILES]:
        with Store(imported(path, scratch)) as store:
            for run in store.runs():
                incidents = store.incidents(run.id)
                wasted = [s for i in incidents for s in i.wasted_step_ids]
                assert len(wasted) == len(set(wasted)), (path.name, run.name)
                assert run.incident_count == len(incidents)
                assert run.wasted_tokens == sum(i.wasted_tokens for i in incidents)
                assert run.wasted_ns == sum(i.wasted_ns for i in incidents)
                total = sum((i.wasted_cost for i in incidents), Decimal(0))
                assert (run.wasted_cost or Decimal(0)) == total


def run_of(scratch: Path, name: str, variant: str = "content-flat.jsonl"):
    store = Store(imported(LOOPS / variant, scratch))
    [run] = [r for r in store.runs() if r.name == name]
    return store, run


def test_one_loop_is_one_incident_with_its_waste_by_hand(scratch):
    store, run = run_of(scratch, "rs_with_llm_between")
    with store:
        [storm] = store.incidents(run.id)
    # One incident: the storm is the headline, the repeated error is its evidence.
    assert storm.kind == "retry_storm" and [e.kind for e in storm.evidence] == ["repeated_error"]
    assert storm.severity == "error" and "issue_refund called 3 times" in storm.message
    # Retries 2 and 3 and the two gpt-4o calls before them: 2 x (1000 x $2.50 + 100 x $10) / 1M.
    assert storm.step_ids == ["s02", "s04", "s06"]
    assert storm.wasted_step_ids == ["s03", "s04", "s05", "s06"]
    assert storm.wasted_tokens == 2 * 1100 and storm.wasted_cost == Decimal("0.007")
    assert storm.wasted_ns == 2 * (800 + 200) * 1_000_000  # two model calls, two tool calls

    store, run = run_of(scratch, "osc_two_tools")
    with store:
        [oscillation] = store.incidents(run.id)
    assert oscillation.step_ids == [f"s{i:02d}" for i in range(2, 8)]
    assert oscillation.wasted_step_ids == ["s04", "s05", "s06", "s07"]

    [(run, [runaway])] = [
        r
        for r in incidents_by_run(LOOPS / "content-flat.jsonl", scratch)
        if r[0].name == "ra_many_steps"
    ]
    # Over its case's 10-step limit, the 11th and 12th calls are over the limit; the 12th (a tool) is the waste beyond it.
    assert runaway.step_ids == ["s11", "s12"] and runaway.wasted_step_ids == ["s12"]


def test_without_arguments_the_message_says_what_was_not_seen(scratch):
    store, run = run_of(scratch, "rs_in_subagent", "nocontent-wrapped.otlp.jsonl")
    with store:
        [storm] = store.incidents(run.id)
    assert storm.message == (
        "fetch_url failed 4 times in a row with 'HTTP 503: Service Unavailable'"
        " (arguments not recorded)"
    )
    assert {e.kind for e in storm.evidence} == {"repeated_error"}


def test_incidents_are_stored_on_import(scratch):
    store, run = run_of(scratch, "rs_tool_fail_same_error")
    with store:
        [incident] = store.incidents(run.id)
        assert incident.kinds == {"retry_storm", "repeated_error"}
        assert (run.incident_count, run.worst_severity) == (1, "error")


def test_normalisation():
    volatile = DEFAULT_RULES.volatile_keys
    assert canonical({"b": 1, "a": " X  y "}, volatile) == canonical(
        '{"a": "x y", "b": 1}', volatile
    )
    assert canonical({"q": 1, "request_id": "r-1"}, volatile) == canonical({"q": 1}, volatile)
    assert normal("Timeout after 3000 ms on 0x7f3a9c2e1b40aa") == normal(
        "timeout after 12 ms on 0x11aa22bb33cc44dd"
    )


def test_user_rules_and_overrides(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("[runaway]\nmax_steps = 3\n")
    rules = Rules.load(user_file=path)
    assert rules.get("runaway", "max_steps") == 3 and rules.get("retry_storm", "min_repeats") == 3
    assert Rules.load(user_file=path, runaway__max_steps=7).get("runaway", "max_steps") == 7
    assert rules.fingerprint != DEFAULT_RULES.fingerprint
    path.write_text('[oscillation]\nseverity = "fatal"\n')
    with pytest.raises(RulesError, match=r"oscillation\.severity"):
        Rules.load(user_file=path)
    path.write_text("generic_errors = 3\n")
    with pytest.raises(RulesError, match="generic_errors"):
        Rules.load(user_file=path)
    path.write_text("[runaway\n")
    with pytest.raises(RulesError, match=re.escape(str(path))):
        Rules.load(user_file=path)


def one_run_file(tmp_path: Path, name: str) -> Path:
    """One case of the labelled set as a file of its own (tracedesk JSON Lines)."""
    lines = (LOOPS / "content-flat.jsonl").read_bytes().splitlines(keepends=True)
    kept = [line for line in lines if b'"format"' in line or f'"{name}"'.encode() in line]
    path = tmp_path / f"{name}.jsonl"
    path.write_bytes(b"".join(kept))
    return path


def test_changed_rules_recompute_incidents(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "db.sqlite"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert main(["import", str(one_run_file(tmp_path, "legit_ten_steps"))]) == 0
    with Store(tmp_path / "db.sqlite") as store:
        assert store.incidents() == []
    config = tmp_path / "config" / "tracedesk"
    config.mkdir(parents=True)
    (config / "loop_rules.toml").write_text("[runaway]\nmax_steps = 5\n")
    assert main(["runs"]) == 0
    assert "1 incident · warning" in capsys.readouterr().out
    with Store(tmp_path / "db.sqlite") as store:
        assert [i.kind for i in store.incidents()] == ["runaway"]


def test_check_gate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "user.db"))
    healthy = one_run_file(tmp_path, "legit_healthy")
    storm = one_run_file(tmp_path, "rs_same_result")
    assert main(["check", str(healthy)]) == 0
    assert not (tmp_path / "user.db").exists()  # files are checked in a scratch database
    capsys.readouterr()
    assert main(["check", str(healthy), str(storm)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "search_docs called 4 times" in out and "wasted 3 steps" in out
    assert main(["check", str(storm), "--severity", "error", "--format", "json"]) == 1
    document = orjson.loads(capsys.readouterr().out)
    assert document[0]["incidents"][0]["kind"] == "retry_storm"
    assert document[0]["wasted_seconds"] == document[0]["incidents"][0]["wasted_seconds"] > 0
    assert main(["check", str(one_run_file(tmp_path, "legit_ten_steps")), "--max-steps", "4"]) == 1
    capsys.readouterr()
    report_path = tmp_path / "junit.xml"
    assert (
        main(["check", str(storm), str(healthy), "--format", "junit", "-o", str(report_path)]) == 1
    )
    suite = ElementTree.parse(report_path).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert suite.find("testcase/failure").get("type") == "error:retry_storm"


def test_check_exit_code_over_the_whole_fixture_tree(scratch, capsys):
    """``check`` passes every healthy trace and fails every looping one, real files included."""
    cases = [(p, MANIFEST[str(p.relative_to(FIXTURES))]["expect"]) for p in REAL_FILES]
    for path in LABELLED_FILES:
        variant = "expect_nocontent" if path.name.startswith("no") else "expect"
        for run, _ in incidents_by_run(path, scratch):
            label = LABELS[run.name]
            if not label["rules"]:  # cases with their own limits are checked above
                cases.append((run.id, label[variant], imported(path, scratch)))
    wrong = []
    for target, expect, *db in cases:
        (scratch / "none.toml").write_text("")  # the shipped rules only
        args = ["check", str(target), "--rules", str(scratch / "none.toml")]
        if db:
            args = ["--db", str(db[0]), *args]
        code = main(args)
        loops = any(severity_rank(DEFAULT_RULES.severity(k)) >= 1 for k in expect)
        if code != (1 if loops else 0):
            wrong.append(f"{target}: exit {code}, expected {expect}")
        capsys.readouterr()
    assert not wrong, "\n".join(wrong)


def test_check_run_ids_from_the_database(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "user.db"))
    assert main(["import", str(one_run_file(tmp_path, "osc_two_tools"))]) == 0
    assert main(["check", "osc_two"]) == 1
    assert "oscillation" in capsys.readouterr().out
    assert main(["check", "nope"]) == 1
    assert "no run with id 'nope'" in capsys.readouterr().err


def test_a_database_with_findings_is_migrated_to_incidents(tmp_path, monkeypatch, capsys):
    db = tmp_path / "v4.db"
    with store_at_version(db, 4) as old:
        old.conn.execute("INSERT INTO runs(id, name, finding_count) VALUES ('r', 'old', 2)")
        old.conn.execute(
            "INSERT INTO findings(run_id, kind, severity, step_ids, wasted_step_ids, message)"
            " VALUES ('r', 'retry_storm', 'error', '[]', '[]', 'old finding')"
        )
    monkeypatch.setenv("TRACEDESK_DB", str(db))
    assert main(["import", str(one_run_file(tmp_path, "rs_same_result"))]) == 0
    with Store(db) as store:
        tables = {r[0] for r in store.conn.execute("SELECT name FROM sqlite_master")}
        assert "findings" not in tables and "incidents" in tables
        assert store.get_run("r").incident_count == 0  # the old findings are gone
        [storm] = store.incidents("rs_same_result")
        assert storm.kind == "retry_storm"


def test_waste_of_unpriced_steps_is_not_zero(capsys):
    """The Agents SDK's response spans name no model: their waste has no price, not $0."""
    path = FIXTURES / "recorded" / "openai-agents" / "retry_storm.jsonl"
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "fetch_url called 5 times with the same arguments" in out
    assert "no price" in out and "$0," not in out


def test_cost_summaries_report_the_waste(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "db.sqlite"))
    for name in ("rs_with_llm_between", "legit_healthy"):
        assert main(["import", str(one_run_file(tmp_path, name))]) == 0
    capsys.readouterr()
    assert main(["costs", "--format", "json"]) == 0
    wasted = orjson.loads(capsys.readouterr().out)["wasted"]
    assert Decimal(wasted.pop("cost_usd")) == Decimal("0.007")
    assert wasted == {"incidents": 1, "tokens": 2200, "seconds": 2.0, "steps_without_price": 0}
    assert main(["costs", "--format", "md"]) == 0
    assert "Wasted in 1 loop incidents: 2200 tokens, 0.0070 USD, 2.0 s." in capsys.readouterr().out


_KEYS = st.sampled_from(["q", "Q", "id", "request_id", "timestamp", "city", "1"])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
                     st.sampled_from(["a", "A ", "", "[1, 2]", '{"q": 1}', "{oops", "x-1"]))  # fmt: skip
_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)), max_leaves=8)  # fmt: skip
_PAYLOADS = st.one_of(_JSON, _JSON.map(lambda v: orjson.dumps(v).decode()))


@settings(max_examples=400, deadline=None)
@given(_PAYLOADS, _PAYLOADS)
def test_calls_with_equal_keys_have_equal_outlines(a, b):
    """A retry storm compares cheap outlines of two calls' arguments (a list's length, an
    object's keys) before their canonical forms: equal forms must have equal outlines, or a
    storm would be missed. Payloads as values and as JSON text, with volatile keys."""
    volatile = Rules.load().volatile_keys
    if canonical(a, volatile) == canonical(b, volatile):
        assert _outline(a, volatile) == _outline(b, volatile)


@settings(max_examples=400, deadline=None)
@given(_PAYLOADS | _JSON.map(lambda v: EncodedJSON(orjson.dumps(v).decode())),
       _PAYLOADS | _JSON.map(lambda v: EncodedJSON(orjson.dumps(v).decode())))  # fmt: skip
@example({"q": 1}, {"q": True})
@example([1.0], [1])
@example({"q": "a"}, {"q": "a"})
def test_the_very_same_payload_has_the_same_canonical_form(a, b):
    """Two calls given the very same payload count as the same call without their canonical
    forms being made: that must never be said of payloads whose forms differ (1 and true
    are equal in Python, not in JSON)."""
    volatile = Rules.load().volatile_keys
    if _same_payload(a, b):
        assert canonical(a, volatile) == canonical(b, volatile)
