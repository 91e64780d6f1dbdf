"""Loop detection on a labelled set: precision and recall per detector must be 1.0."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from decimal import Decimal

import orjson
import pytest

from tracedesk.cli import main
from tracedesk.core.analysis.loops import (
    DETECTORS,
    Rules,
    RulesError,
    canonical,
    detect,
    normal_error,
)
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.importers import import_file
from tracedesk.core.store import Store

from .conftest import FIXTURES

LOOPS = FIXTURES / "loops"
LABELS = json.loads((LOOPS / "labels.json").read_text())


def findings_of(tmp_path, name: str, rules: Rules):
    with Store(tmp_path / f"{name}.db") as store:
        import_file(
            store, LOOPS / f"{name}.jsonl", pricing=Pricing.load(use_user_file=False), rules=rules
        )
        run = store.get_run(name)
        return detect(run, store.steps(name), rules), store


def test_the_labelled_set_is_large_and_covers_every_detector():
    assert len(LABELS) >= 30
    assert {d for label in LABELS.values() for d in label["expect"]} == set(DETECTORS)
    assert sum(not label["expect"] for label in LABELS.values()) >= 8  # legitimate repetition


def test_precision_and_recall_per_detector(tmp_path):
    counts = {d: {"tp": 0, "fp": 0, "fn": 0} for d in DETECTORS}
    mistakes = []
    for name, label in LABELS.items():
        rules = Rules.load(use_user_file=False, **label["rules"])
        found = {f.kind for f in findings_of(tmp_path, name, rules)[0]}
        for detector in DETECTORS:
            expected = detector in label["expect"]
            got = detector in found
            if expected and got:
                counts[detector]["tp"] += 1
            elif got:
                counts[detector]["fp"] += 1
                mistakes.append(f"{name}: unexpected {detector}")
            elif expected:
                counts[detector]["fn"] += 1
                mistakes.append(f"{name}: missed {detector}")
    report = []
    for detector, c in counts.items():
        precision = c["tp"] / ((c["tp"] + c["fp"]) or 1)
        recall = c["tp"] / ((c["tp"] + c["fn"]) or 1)
        report.append(f"{detector:15} precision {precision:.2f} recall {recall:.2f} ({c})")
    print("\n".join(report))
    assert not mistakes, mistakes


def test_wasted_tokens_and_cost_by_hand(tmp_path):
    rules = Rules.load(use_user_file=False)
    findings, _ = findings_of(tmp_path, "rs_with_llm_between", rules)
    storm = next(f for f in findings if f.kind == "retry_storm")
    # Retries 2 and 3 and the two gpt-4o calls before them: 2 x (1000 x $2.50 + 100 x $10) / 1M.
    assert storm.wasted_tokens == 2 * 1100
    assert storm.wasted_cost == Decimal("0.007")
    assert storm.step_ids == ["s02", "s04", "s06"] and storm.wasted_step_ids == [
        "s03",
        "s04",
        "s05",
        "s06",
    ]
    assert storm.severity == "error" and "issue_refund called 3 times" in storm.message

    findings, _ = findings_of(tmp_path, "osc_two_tools", rules)
    [oscillation] = findings
    assert oscillation.step_ids == [f"s{i:02d}" for i in range(2, 8)]
    assert (
        oscillation.wasted_step_ids == ["s04", "s05", "s06", "s07"] and oscillation.wasted_cost == 0
    )

    findings, _ = findings_of(tmp_path, "ra_many_steps", rules)
    [runaway] = findings
    # The 11th and 12th calls are over the limit; the 12th (a tool) is the waste beyond it.
    assert runaway.step_ids == ["s11", "s12"] and runaway.wasted_step_ids == ["s12"]


def test_findings_are_stored_on_import(tmp_path):
    rules = Rules.load(use_user_file=False)
    _, store = findings_of(tmp_path, "rs_tool_fail_same_error", rules)
    with Store(store.path) as reopened:
        rows = reopened.findings("rs_tool_fail_same_error")
        assert {r["kind"] for r in rows} == {"retry_storm", "repeated_error"}
        run = reopened.get_run("rs_tool_fail_same_error")
        assert (run.finding_count, run.worst_severity) == (2, "error")


def test_normalisation():
    volatile = Rules.load(use_user_file=False).volatile_keys
    assert canonical({"b": 1, "a": " X  y "}, volatile) == canonical(
        '{"a": "x y", "b": 1}', volatile
    )
    assert canonical({"q": 1, "request_id": "r-1"}, volatile) == canonical({"q": 1}, volatile)
    assert normal_error("Timeout after 3000 ms on 0x7f3a9c2e1b40aa") == normal_error(
        "timeout after 12 ms on 0x11aa22bb33cc44dd"
    )


def test_user_rules_and_overrides(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("[runaway]\nmax_steps = 3\n")
    rules = Rules.load(user_file=path)
    assert rules.get("runaway", "max_steps") == 3 and rules.get("retry_storm", "min_repeats") == 3
    assert Rules.load(user_file=path, runaway__max_steps=7).get("runaway", "max_steps") == 7
    assert rules.fingerprint != Rules.load(use_user_file=False).fingerprint
    path.write_text('[oscillation]\nseverity = "fatal"\n')
    with pytest.raises(RulesError, match=r"oscillation\.severity"):
        Rules.load(user_file=path)
    path.write_text("[runaway\n")
    with pytest.raises(RulesError, match=re.escape(str(path))):
        Rules.load(user_file=path)


def test_changed_rules_recompute_findings(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "db.sqlite"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert main(["import", str(LOOPS / "legit_ten_steps.jsonl")]) == 0
    with Store(tmp_path / "db.sqlite") as store:
        assert store.findings() == []
    config = tmp_path / "config" / "tracedesk"
    config.mkdir(parents=True)
    (config / "loop_rules.toml").write_text("[runaway]\nmax_steps = 5\n")
    assert main(["runs"]) == 0
    assert "1 warning" in capsys.readouterr().out
    with Store(tmp_path / "db.sqlite") as store:
        assert [r["kind"] for r in store.findings()] == ["runaway"]


def test_check_gate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "user.db"))
    healthy, storm = LOOPS / "legit_healthy.jsonl", LOOPS / "rs_same_result.jsonl"
    assert main(["check", str(healthy)]) == 0
    assert not (tmp_path / "user.db").exists()  # files are checked in a scratch database
    capsys.readouterr()
    assert main(["check", str(healthy), str(storm)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "search_docs called 4 times" in out
    assert main(["check", str(storm), "--severity", "error", "--format", "json"]) == 1
    document = orjson.loads(capsys.readouterr().out)
    assert document[0]["findings"][0]["kind"] == "retry_storm"
    assert main(["check", str(LOOPS / "legit_ten_steps.jsonl"), "--max-steps", "4"]) == 1
    capsys.readouterr()
    report = tmp_path / "junit.xml"
    assert main(["check", str(storm), str(healthy), "--format", "junit", "-o", str(report)]) == 1
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert suite.find("testcase/failure").get("type") == "error:retry_storm"


def test_check_run_ids_from_the_database(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRACEDESK_DB", str(tmp_path / "user.db"))
    assert main(["import", str(LOOPS / "osc_two_tools.jsonl")]) == 0
    assert main(["check", "osc_two"]) == 1
    assert "oscillation" in capsys.readouterr().out
    assert main(["check", "nope"]) == 1
    assert "no run with id 'nope'" in capsys.readouterr().err
