from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from tracedesk.core.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
REAL_FIXTURES = FIXTURES / "real"  # copied from shared/fixtures/real (see SOURCES.md)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "test.db") as s:
        yield s


def write_jsonl(path: Path, records: list) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return path


def snapshot(store: Store) -> str:
    """Every row of every table, to prove a failed import changed nothing."""
    return "\n".join(store.conn.iterdump())


HEADER = {"type": "header", "format": "tracedesk", "version": 1}


def native_run(run_id: str = "r1", steps: int = 3, **run_fields) -> list[dict]:
    """A small valid native trace: a root agent step with ``steps - 1`` children."""
    records: list[dict] = [HEADER, {"type": "run", "id": run_id, "name": "demo", **run_fields}]
    records.append(
        {
            "type": "step",
            "run_id": run_id,
            "id": "root",
            "kind": "agent",
            "name": "agent",
            "start_ns": 1_000,
            "end_ns": 9_000,
            "status": "ok",
        }
    )
    for i in range(1, steps):
        records.append(
            {
                "type": "step",
                "run_id": run_id,
                "id": f"s{i}",
                "parent_id": "root",
                "kind": "llm",
                "name": f"call {i}",
                "start_ns": 1_000 + i,
                "end_ns": 2_000 + i,
                "status": "ok",
                "model": "gpt-4o",
                "input_tokens": 10 * i,
                "output_tokens": i,
            }
        )
    return records


DEMO_FILE = Path(__file__).parents[1] / "resources" / "samples" / "demo.tracedesk.jsonl"
# Counted from the shipped file itself, so that regenerating the samples needs no edits here.
DEMO_STEPS = sum(b'"type":"step"' in line for line in DEMO_FILE.read_bytes().splitlines())


def library_shown(window, qtbot) -> None:
    """Wait for the runs library, which the window reads in a worker."""
    qtbot.waitUntil(lambda: not window.library_pending, timeout=10_000)


def demo_window(qtbot, tmp_path):
    """A main window on a new demo database, shown, its runs listed."""
    from PySide6.QtCore import QSettings

    from tracedesk.ui.app import fill_with_demo
    from tracedesk.ui.main_window import MainWindow

    db = tmp_path / "gui.db"
    fill_with_demo(db)
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(db, settings)
    qtbot.addWidget(win)
    win.show()
    library_shown(win, qtbot)
    return win


@pytest.fixture
def window(qtbot, tmp_path):
    """The main window on the demo database, shown, its runs listed."""
    from PySide6.QtCore import QThreadPool

    yield demo_window(qtbot, tmp_path)
    QThreadPool.globalInstance().waitForDone(10_000)


@contextmanager
def store_at_version(path: Path, version: int) -> Iterator[Store]:
    """A database made as schema ``version`` made it (the later migrations not applied),
    to check what they do to it."""
    from tracedesk.core.store import schema

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(schema, "SCHEMA_VERSION", version)
        patch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:version])
        with Store(path) as store:
            yield store
