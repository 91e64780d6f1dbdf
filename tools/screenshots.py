"""Render the main window on the demo data to PNG files (for looking at, and the README).

    python tools/screenshots.py [OUT_DIR]      # default: screenshots/

Shots: the runs library with a run open, a run with a retry loop highlighted, the cost
charts, the cost heat map, a comparison and a request group, two imported traces, and
spans arriving while listening, at 1280x720 and 1920x1080, light
and dark (one folder each). Runs offscreen, so it works in CI and without a display.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QSettings, QThreadPool
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from tracedesk.core.ingest import import_file
from tracedesk.core.receiver import free_port
from tracedesk.core.store import Store
from tracedesk.ui.app import application, fill_with_demo
from tracedesk.ui.main_window import MainWindow


def settle(app: QApplication) -> None:
    """Let timers fire (the charts follow a selection after 150 ms), workers finish and the
    views repaint."""
    for _ in range(3):
        deadline = time.monotonic() + 0.25
        while time.monotonic() < deadline:
            app.processEvents()
            time.sleep(0.01)
        QThreadPool.globalInstance().waitForDone(10_000)
        app.processEvents()


SIZES = ((1280, 720), (1920, 1080))


ROOT = Path(__file__).resolve().parent.parent
LIVE_SPANS = "recorded/langfuse-otlp/agent_tools.pb"
IMPORTED = (
    "real/otlp/monocle_trace2.console.json",
    "recorded/langfuse-otlp/anthropic_cache.pb",
)


def dark_palette() -> QPalette:
    """A dark palette as a desktop in dark mode hands Qt one."""
    palette = QPalette()
    for role, color in (
        (QPalette.ColorRole.Window, "#2b2b2b"), (QPalette.ColorRole.WindowText, "#e6e6e6"),
        (QPalette.ColorRole.Base, "#1e1e1e"), (QPalette.ColorRole.AlternateBase, "#262626"),
        (QPalette.ColorRole.Text, "#e6e6e6"), (QPalette.ColorRole.Button, "#353535"),
        (QPalette.ColorRole.ButtonText, "#e6e6e6"), (QPalette.ColorRole.Highlight, "#2f65ca"),
        (QPalette.ColorRole.HighlightedText, "#ffffff"), (QPalette.ColorRole.ToolTipBase, "#2b2b2b"),
        (QPalette.ColorRole.ToolTipText, "#e6e6e6"), (QPalette.ColorRole.PlaceholderText, "#9a9a9a"),
    ):  # fmt: skip
        palette.setColor(role, QColor(color))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text,
                 QPalette.ColorRole.ButtonText):  # fmt: skip
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a7a"))
    return palette


def take(out: Path, size: tuple[int, int] = SIZES[0], dark: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    app = application()
    app.setStyle("Fusion")
    app.setPalette(dark_palette() if dark else app.style().standardPalette())
    shots = []
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "demo.db"
        fill_with_demo(db)
        with Store(db) as store:  # real traces beside the demo: a Monocle run, a cache write
            for trace in IMPORTED:
                import_file(store, ROOT / "tests" / "fixtures" / trace)
        settings = QSettings(str(Path(folder) / "settings.ini"), QSettings.Format.IniFormat)
        window = MainWindow(db, settings)
        window.resize(*size)
        window.show()
        settle(app)  # the library is read in a worker
        # A run whose retry storm is worth looking at.
        model = window.runs.model
        storm = next(r.id for r in model.rows if r.worst_severity == "error")
        window.runs.select_run(storm)
        settle(app)
        window.select_step(window.tree_model.steps[2].id)
        settle(app)
        shots.append(out / "main-window.png")
        window.grab().save(str(shots[-1]))
        window.detail.tabs.setCurrentIndex(window.detail.TABS.index("Cost"))
        settle(app)
        shots.append(out / "cost-detail.png")
        window.grab().save(str(shots[-1]))
        window.detail.tabs.setCurrentIndex(0)

        window.incidents.selectRow(0)
        window.incidents_dock.raise_()
        settle(app)
        window.timeline_dock.raise_()
        settle(app)
        shots.append(out / "loop-highlighted.png")
        window.grab().save(str(shots[-1]))

        window.charts_dock.raise_()
        settle(app)
        shots.append(out / "cost-charts.png")
        window.grab().save(str(shots[-1]))

        window.timeline_dock.raise_()
        window.bar_colours.setCurrentIndex(1)  # the cost heat map of the waterfall
        settle(app)
        shots.append(out / "cost-heat.png")
        window.grab().save(str(shots[-1]))
        window.bar_colours.setCurrentIndex(0)

        # Two runs of one request: a healthy one and the runaway one.
        same = window.request_group(storm)
        window.compare_runs_by_id(same[0], same[-1])
        settle(app)  # read and aligned in a worker
        compare = window.open_views[-1]
        compare.resize(*size)
        settle(app)
        shots.append(out / "compare.png")
        compare.grab().save(str(shots[-1]))

        # The step search: the failed tool calls of the storm, highlighted, then filtered.
        window.runs.select_run(storm)
        settle(app)
        window.step_search.field.setText("status:error")
        window.step_search.search.emit("status:error")
        settle(app)
        settle(app)  # the index is built in a write job first
        window.go_to_match(1)
        settle(app)
        shots.append(out / "step-search.png")
        window.grab().save(str(shots[-1]))
        window.step_search.mode.setCurrentIndex(1)
        settle(app)
        shots.append(out / "step-search-filter.png")
        window.grab().save(str(shots[-1]))
        window.step_search.mode.setCurrentIndex(0)
        window.step_search.field.clear()
        window.step_search.search.emit("")
        settle(app)

        window.show_session()
        settle(app)
        session = window.open_views[-1]
        session.resize(*size)
        settle(app)
        shots.append(out / "session.png")
        session.grab().save(str(shots[-1]))

        window.runs.select_run(storm)
        window.show_request_group()
        settle(app)
        group = window.open_views[-1]
        group.resize(*size)
        settle(app)
        shots.append(out / "request-group.png")
        group.grab().save(str(shots[-1]))

        for name, run_id, step_index in (
            ("imported-monocle.png", "d0f75d77caca795afe46ccdd382339c2", 9),
            ("imported-cache-write.png", "1c6dfec7f0ab4c20ee7812b763c7528d", 0),
        ):
            window.runs.select_run(run_id)
            settle(app)
            window.select_step(window.tree_model.steps[step_index].id)
            settle(app)
            shots.append(out / name)
            window.grab().save(str(shots[-1]))
        # Listening: a recorded agent's spans arrive over OTLP/HTTP while the window is open.
        window.live_capture.port = free_port()
        window.live_capture.action.setChecked(True)
        body = (ROOT / "tests" / "fixtures" / LIVE_SPANS).read_bytes()
        request = urllib.request.Request(window.live_capture.session.receiver.url, data=body,
                                         headers={"Content-Type": "application/x-protobuf"})  # fmt: skip
        urllib.request.urlopen(request, timeout=10).read()
        settle(app)
        window.runs.table.selectRow(0)
        settle(app)
        shots.append(out / "listening.png")
        window.grab().save(str(shots[-1]))
        window.close()
    return shots


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots")
    for width, height in SIZES:
        for dark in (False, True):
            folder = root / f"{width}x{height}{'-dark' if dark else ''}"
            for path in take(folder, (width, height), dark):
                print(path)
