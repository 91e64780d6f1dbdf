from __future__ import annotations

import json
import subprocess
import sys

import orjson
import pytest

from tracedesk.cli import main
from tracedesk.core.store import Store

from .conftest import DEMO_STEPS, FIXTURES, HEADER, native_run, write_jsonl


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
    assert "1 run, 3 steps imported, 0 already present, 1 warning" in captured.out
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


DB_FORMS = [
    lambda db, cmd: ["--db", db, *cmd],
    lambda db, cmd: [f"--db={db}", *cmd],
    lambda db, cmd: [*cmd[:1], "--db", db, *cmd[1:]],
    lambda db, cmd: [*cmd[:1], f"--db={db}", *cmd[1:]],
]


@pytest.mark.parametrize("form", range(len(DB_FORMS)))
def test_every_command_takes_db_before_or_after_it(tmp_path, capsys, form):
    """``--db PATH`` and ``--db=PATH``, before or after the command, on an existing file."""
    db = str(tmp_path / "matrix.db")
    trace = FIXTURES / "formats" / "otlp_genai.jsonl"
    commands = [["import", str(trace)], ["runs"], ["show", "0af7"], ["costs", "--by", "model"],
                ["pricing"], ["diff", "0af7", "0af7"], ["check", "0af7"],
                ["export", "0af7", "-o", str(tmp_path / "out.jsonl")], ["demo", "--runs", "2"]]  # fmt: skip
    for command in commands:
        code = main(DB_FORMS[form](db, command))
        assert code in (0, 1), (command, capsys.readouterr().err)
        assert "invalid choice" not in capsys.readouterr().err
    assert Store(db).get_run("0af7651916cd43dd8448eb211c80319c") is not None


def test_trace_text_cannot_drive_the_terminal(tmp_path, capsys, monkeypatch):
    """Escape sequences and bidi overrides in trace text are spelled out on a terminal and
    in text reports, and the JUnit report always parses."""
    from xml.etree import ElementTree

    name = "evil\x1b]0;pwned\x07\x1b[2K \u202eexe.txt\x00"
    records = [HEADER, {"type": "run", "id": "r1", "name": name}]
    for i in range(4):  # a retry storm, so that check reports an incident with the name
        records.append({"type": "step", "run_id": "r1", "id": f"s{i}", "kind": "tool",
                        "tool_name": name, "tool_args": {"q": 1}, "status": "error",
                        "error": name, "start_ns": i * 10, "end_ns": i * 10 + 5})  # fmt: skip
    trace = tmp_path / "evil.jsonl"
    trace.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    db = str(tmp_path / "evil.db")
    assert main(["--db", db, "import", str(trace)]) == 0
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    for command in (["runs"], ["show", "r1"], ["costs", "--by", "tool"], ["diff", "r1", "r1"]):
        main(["--db", db, *command])
        out = capsys.readouterr().out
        assert "\x1b" not in out and "\u202e" not in out and "\x07" not in out, command
    assert "\\x1b]0;pwned" in (main(["--db", db, "show", "r1"]), capsys.readouterr().out)[1]
    report = tmp_path / "junit.xml"
    assert main(["check", str(trace), "--format", "junit", "-o", str(report)]) == 1
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert "\\x1b" in suite.find("testcase").get("name")
    monkeypatch.undo()
    assert main(["check", str(trace), "--format", "text"]) == 1
    text = capsys.readouterr().out
    assert "\x1b" not in text and "\\x1b" in text


def test_import_goes_on_past_a_bad_file_and_fails_at_the_end(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"foo": 1}\n')
    good = FIXTURES / "formats" / "otlp_genai.jsonl"
    db = str(tmp_path / "some.db")
    assert main(["--db", db, "import", str(bad), str(good), str(tmp_path / "missing.json")]) == 1
    err = capsys.readouterr().err
    assert "bad.jsonl: start of file: not a trace format" in err and "missing.json" in err
    assert "2 of 3 files not imported" in err
    assert len(Store(db).runs()) == 1


def test_an_ambiguous_prefix_lists_the_candidates(tmp_path, capsys):
    db = str(tmp_path / "two.db")
    trace = tmp_path / "two.jsonl"
    write_jsonl(trace, [*native_run("run-a"), *native_run("run-b")[1:]])
    assert main(["--db", db, "import", str(trace)]) == 0
    assert main(["--db", db, "show", "run-"]) == 1
    assert "ambiguous: run-a (demo), run-b (demo)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("file", "content", "message"),
    [
        ("loop_rules.toml", "[oscillation]\nmax_period = 2.5\n",
         "oscillation.max_period must be a whole number from 0 to 10,000, not 2.5"),
        ("loop_rules.toml", "[oscillation]\nmax_period = 100000000000\n",
         "oscillation.max_period must be a whole number from 0 to 10,000"),
        ("loop_rules.toml", "volatile_keys = [1, 2]\n", "volatile_keys must be a list of strings"),
        ("loop_rules.toml", "[retry_storm]\nmin_repeat = 3\n", "unknown setting retry_storm.min_repeat"),
        ("loop_rules.toml", "[retry_strom]\nmin_repeats = 3\n", "unknown setting retry_strom"),
        ("pricing.json", '{"models": []}', "models must be an object of name: price"),
        ("pricing.json", '{"models": {"m": {"input": 1e300, "output": 1}}}', "is not a price"),
        ("pricing.json", '{"model": {}}', "unknown key 'model'"),
        ("pricing.json", None, "pricing.json: cannot read"),
    ],
)  # fmt: skip
def test_a_bad_settings_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys, file, content,
                                                    message):  # fmt: skip
    config = tmp_path / "config"
    config.mkdir()
    monkeypatch.setattr("platformdirs.user_config_dir", lambda *a, **k: str(config))
    if content is None:
        (config / file).mkdir()  # a directory where the file should be
    else:
        (config / file).write_text(content)
    trace = FIXTURES / "formats" / "otlp_genai.jsonl"
    assert main(["--db", str(tmp_path / "s.db"), "import", str(trace)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") <= 2 and "Traceback" not in err
    assert str(config / file) in err and message in err


def test_exports_never_leave_half_a_file_and_respect_what_is_there(tmp_path, capsys):
    import os
    import stat

    db = str(tmp_path / "e.db")
    assert main(["--db", db, "demo", "--runs", "2"]) == 0
    folder = tmp_path / "out"
    folder.mkdir()
    # A directory, a missing folder: one line each, nothing left behind.
    for target in (folder, tmp_path / "missing" / "costs.csv"):
        assert main(["--db", db, "costs", "--format", "csv", "-o", str(target)]) == 1
        err = capsys.readouterr().err
        assert err.startswith("tracedesk: ") and err.count("\n") == 1 and "Traceback" not in err
    assert list(folder.iterdir()) == []
    # An existing file keeps its mode; a symlink's target is written and the link stays.
    kept = folder / "costs.csv"
    kept.write_text("old")
    kept.chmod(0o640)
    link = folder / "link.csv"
    link.symlink_to(kept)
    assert main(["--db", db, "costs", "--format", "csv", "-o", str(link)]) == 0
    assert link.is_symlink() and kept.read_text().startswith("key,label")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640
    assert sorted(p.name for p in folder.iterdir()) == ["costs.csv", "link.csv"]
    # A special file is written to, never replaced.
    if os.path.exists("/dev/null"):
        assert main(["--db", db, "costs", "--format", "json", "-o", "/dev/null"]) == 0
        assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_damaged_database_is_one_line(tmp_path, capsys):
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(bytes(range(256)) * 32)
    folder = tmp_path / "folder.db"
    folder.mkdir()
    for db, message in ((damaged, "this is not a tracedesk database, or it is damaged"),
                        (folder, "this is a folder, not a database file")):  # fmt: skip
        assert main(["--db", str(db), "runs"]) == 1
        err = capsys.readouterr().err
        assert err == f"tracedesk: {db}: {message}\n"


def test_runs_fit_the_terminal_and_costs_by_run_name_the_ids(tmp_path, capsys, monkeypatch):
    db = str(tmp_path / "w.db")
    assert main(["--db", db, "demo", "--runs", "4"]) == 0
    capsys.readouterr()
    for columns in (120, 200):
        monkeypatch.setenv("COLUMNS", str(columns))
        assert main(["--db", db, "runs"]) == 0
        assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= columns
    assert main(["--db", db, "costs", "--by", "run"]) == 0
    ids = [run.id for run in Store(db).runs()]
    out = capsys.readouterr().out
    assert all(f"[{run_id[:12]}]" in out for run_id in ids)
    assert main(["--db", db, "diff", ids[0], ids[1]]) == 0
    assert "= same step  ~ changed  ↕ moved  - only in A  + only in B" in capsys.readouterr().out


@pytest.fixture
def immutable(tmp_path):
    """Make paths immutable (chattr +i), which even root cannot write: the way to test a
    read-only database here, where the tests may run as root. Undone after the test."""
    made: list = []

    def make(path):
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"no immutable files here: {done.stderr.decode().strip()}")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_read_only_database_and_folder_give_one_line(tmp_path, capsys, immutable):
    """Issue 14: a read-only database, or a folder where it cannot be written, is a one-line
    error, never a traceback, and the database is left as it was."""
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "ro.db"
    assert main(["--db", str(db), "demo", "--runs", "3"]) == 0
    before = db.read_bytes()
    capsys.readouterr()
    trace = write_jsonl(tmp_path / "more.jsonl", native_run("extra"))
    immutable(db)
    immutable(folder)
    code = main(["--db", str(db), "import", str(trace)])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    assert f"{db}: cannot open the database" in err
    new_db = folder / "new.db"
    code = main(["--db", str(new_db), "runs"])
    err = capsys.readouterr().err
    assert code != 0 and err.count("\n") == 1 and "Traceback" not in err, err
    assert db.read_bytes() == before and not new_db.exists()
