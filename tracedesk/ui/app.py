"""Start the desktop application."""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import platformdirs
import pyqtgraph as pg
from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from tracedesk import __version__
from tracedesk.core.analysis.loops import Rules
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.ingest import import_file
from tracedesk.core.store import Store, StoreError, default_db_path
from tracedesk.core.store.db import database_problem
from tracedesk.resources import demo_traces, resource
from tracedesk.ui.main_window import MainWindow


def application() -> QApplication:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("tracedesk")
    app.setOrganizationName("tracedesk")
    app.setApplicationVersion(__version__)
    icon = resource("icons", "tracedesk.svg")
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    # Plots follow the system palette, light or dark.
    palette = app.palette()
    pg.setConfigOptions(
        antialias=False, background=palette.base().color(), foreground=palette.text().color()
    )
    return app  # type: ignore[return-value]


def demo_db_path() -> Path:
    return Path(platformdirs.user_data_dir("tracedesk", appauthor=False)) / "demo.db"


def fill_with_demo(db_path: Path) -> None:
    """Import the shipped demo traces into a database that has no runs yet."""
    with Store(db_path) as store:
        if store.counts()["runs"] == 0:
            from importlib.resources import as_file

            # Priced with the shipped settings: the window re-prices them with the user's,
            # or says what is wrong with the user's files.
            with as_file(demo_traces()) as path:
                import_file(store, path, pricing=Pricing.load(use_user_file=False),
                            rules=Rules.load(use_user_file=False))  # fmt: skip


def run_app(db: Path | None = None, files: Sequence[Path] = (), demo: bool = False) -> int:
    """Open the main window; ``demo`` opens the built-in demo database instead."""
    app = application()
    db_path = demo_db_path() if demo else (db or default_db_path())
    try:
        if demo:
            fill_with_demo(db_path)
        with Store(db_path) as store:  # opened here first: an unusable database is a message
            empty = store.counts()["runs"] == 0
        window = MainWindow(db_path)
    except (sqlite3.Error, StoreError) as exc:  # never a traceback: say what is wrong
        problem = database_problem(exc, db_path) if isinstance(exc, sqlite3.Error) else str(exc)
        box = QMessageBox(QMessageBox.Icon.Critical, "Cannot open the database",
                          f"{db_path}\n\n{problem}")  # fmt: skip
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.exec()
        return 1
    window.show()
    if files:
        window.import_files(list(files))
    elif empty:
        QTimer.singleShot(0, lambda: offer_demo(window))
    else:
        window.select_first_run = True  # once the library is read
    return app.exec()


def offer_demo(window: MainWindow) -> None:
    answer = QMessageBox.question(
        window, "No traces yet",
        "This database has no runs yet.\n\nLoad the built-in demo traces to look around? "
        "You can also open your own trace files with File → Open or drop them on the window.",
    )  # fmt: skip
    if answer == QMessageBox.StandardButton.Yes:
        from importlib.resources import as_file

        with as_file(demo_traces()) as path:
            window.import_files([path], remember=False)


def self_test() -> int:
    """Open the window offscreen on the demo data, render it once, exit 0 (for bundles)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = application()
    with tempfile.TemporaryDirectory() as folder:
        db_path = Path(folder) / "self-test.db"
        fill_with_demo(db_path)
        settings = QSettings(str(Path(folder) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(db_path, settings)
        window.show()
        while window.library_pending:  # read in a worker
            app.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)
        window.runs.table.selectRow(0)
        app.processEvents()
        image = window.grab().toImage()
        ok = not image.isNull() and image.width() > 0 and len(window.runs.model.rows) > 0
        window.close()
    print(f"tracedesk {__version__} self-test: {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1
