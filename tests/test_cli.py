from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from tracedesk.cli import main

from .conftest import DEMO_STEPS, native_run, write_jsonl


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = tmp_path / "cli.db"
    monkeypatch.setenv("TRACEDESK_DB", str(path))
    return path


def test_demo_runs_show_export(db, tmp_path, capsys):
    assert main(["demo"]) == 0
    assert f"30 runs, {DEMO_STEPS} steps imported" in capsys.readouterr().out
    assert main(["runs", "--sort", "step_count"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("30 runs") and "Triage agent workflow" in out
    run_id = out.splitlines()[2].split()[0]
    assert main(["show", run_id]) == 0
    tree = capsys.readouterr().out
    assert "\n  handoff" in tree and "tok" in tree
    target = tmp_path / "one.jsonl"
    assert main(["export", run_id, "-o", str(target)]) == 0
    lines = [orjson.loads(line) for line in target.read_bytes().splitlines()]
    assert lines[0]["format"] == "tracedesk" and lines[1]["id"].startswith(run_id)


def test_import_summary_and_warning(db, tmp_path, capsys):
    records = native_run()
    records[3]["parent_id"] = "ghost"
    path = write_jsonl(tmp_path / "o.jsonl", records)
    assert main(["--db", str(db), "import", str(path)]) == 0
    captured = capsys.readouterr()
    assert "1 runs, 3 steps imported, 0 already present, 1 warnings" in captured.out
    assert "missing parent" in captured.err
    assert main(["import", str(path)]) == 0
    assert "already imported" in capsys.readouterr().out


def test_generated_demo(db, capsys):
    assert main(["demo", "--runs", "7", "--seed", "3"]) == 0
    assert "7 runs" in capsys.readouterr().out


def test_user_errors_are_one_line(db, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(orjson.dumps(native_run()[0]) + b"\n{broken\n")
    assert main(["import", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{bad}: line 2: malformed JSON" in err
    assert main(["import", str(tmp_path / "missing.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err
    assert main(["show", "nope"]) == 1
    assert capsys.readouterr().err == "tracedesk: no run with id 'nope'\n"


def test_module_entry_point(db):
    done = subprocess.run(
        [sys.executable, "-m", "tracedesk", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("tracedesk ")


def test_failed_export_leaves_no_file(db, tmp_path, capsys):
    assert main(["demo"]) == 0
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["export", "no-such-run", "-o", str(out_dir / "x.jsonl")]) == 1
    assert list(out_dir.iterdir()) == []
    assert "no run with id 'no-such-run'" in capsys.readouterr().err


def test_gui_without_a_display_says_so(monkeypatch, capsys):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert main([]) == 1
    assert "no display" in capsys.readouterr().err


def test_large_files_show_progress(db, tmp_path, capsys, monkeypatch):
    import tracedesk.cli as cli

    monkeypatch.setattr(cli, "LARGE_FILE", 0)
    monkeypatch.setattr("tracedesk.core.ingest.PROGRESS_EVERY", 10)
    assert main(["demo", "--runs", "5"]) == 0
    path = tmp_path / "p.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in native_run(steps=40)))
    assert main(["import", str(path)]) == 0
    err = capsys.readouterr().err
    assert "p.jsonl: 100%" in err and "%" in err.split("100%")[0]
