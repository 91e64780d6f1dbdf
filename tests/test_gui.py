"""The desktop application, driven through real widgets offscreen (pytest-qt)."""

from __future__ import annotations

import csv
import os
from decimal import Decimal
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QThreadPool, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from tracedesk.core import ingest as ingest_module
from tracedesk.core import reader_process
from tracedesk.core.export import format_usd, native_lines
from tracedesk.core.ingest import import_file
from tracedesk.core.samples import generate
from tracedesk.core.store import Store
from tracedesk.core.text import format_duration
from tracedesk.ui.app import fill_with_demo, self_test
from tracedesk.ui.main_window import ExportDialog, MainWindow
from tracedesk.ui.models import RUN_ID_ROLE, JsonModel, RunsTableModel, StepTreeModel, step_rows

from .conftest import (
    DEMO_STEPS,
    FIXTURES,
    HEADER,
    REAL_FIXTURES,
    demo_window,
    library_shown,
    snapshot,
    write_jsonl,
)


def idle(window) -> bool:
    """No import running, and the library read after the last one is shown."""
    return window.import_task is None and not window.library_pending


def show_step(window, qtbot, step_id: str) -> None:
    """Select a step and wait for its details, read in a worker."""
    window.select_step(step_id)
    qtbot.waitUntil(lambda: window.detail.step is not None and window.detail.step.id == step_id)


def opened_view(window, qtbot, action):
    """The compare or request window that ``action`` opens once its data is read."""
    with qtbot.waitSignal(window.view_opened, timeout=10_000) as opened:
        action()
    view = opened.args[0]
    qtbot.addWidget(view)
    return view


def open_run(window, qtbot, predicate=lambda row: True) -> str:
    run_id = next(r.id for r in window.runs.model.rows if predicate(r))
    assert window.runs.select_run(run_id)
    qtbot.waitUntil(lambda: window.current_run == run_id)
    return run_id


def test_models_pass_the_model_tester(window, qtbot, qtmodeltester):
    qtmodeltester.check(window.runs.model)
    qtmodeltester.check(window.runs.proxy)
    open_run(window, qtbot, lambda r: r.incident_count)
    qtmodeltester.check(window.tree_model)
    qtmodeltester.check(window.incidents_model)
    qtmodeltester.check(JsonModel({"a": [1, {"b": None}], "c": "text"}))


def test_library_lists_runs_with_costs_and_incidents(window):
    model: RunsTableModel = window.runs.model
    assert model.rowCount() == 30
    assert sum(r.step_count for r in model.rows) == DEMO_STEPS
    flagged = [r for r in model.rows if r.incident_count]
    assert flagged and all(model.data(model.index(model.rows.index(r), 8)) for r in flagged)
    assert all(model.data(model.index(i, 5)).startswith("$") for i in range(model.rowCount()))


def test_search_and_filters(window, qtbot):
    proxy = window.runs.proxy
    qtbot.keyClicks(window.runs.search, "oslo umbrella")
    assert 0 < proxy.rowCount() < 30
    assert all("Oslo" in proxy.index(r, 1).data() for r in range(proxy.rowCount()))
    window.runs.search.clear()
    qtbot.keyClicks(window.runs.search, "claude")  # matches the models column
    assert 0 < proxy.rowCount() < 30
    window.runs.search.clear()
    window.runs.incidents_only.setChecked(True)
    assert all(proxy.index(r, 8).data() for r in range(proxy.rowCount()))
    window.runs.incidents_only.setChecked(False)
    window.runs.status.setCurrentText("error")
    assert proxy.rowCount() == sum(r.status == "error" for r in window.runs.model.rows)


def test_selecting_a_run_fills_tree_timeline_and_incidents(window, qtbot):
    run_id = open_run(window, qtbot, lambda r: r.worst_severity == "error")
    with Store(window.db_path) as store:
        assert len(window.tree_model.steps) == store.get_run(run_id).step_count
        assert window.incidents_model.rowCount() == len(store.incidents(run_id))
    assert len(window.timeline.steps) == len(window.tree_model.steps)
    assert window.tree_model.rowCount() == 1  # one root agent


def test_clicking_a_bar_selects_the_step_in_the_tree(window, qtbot):
    open_run(window, qtbot, lambda r: r.incident_count)
    timeline = window.timeline
    row = next(i for i, s in enumerate(timeline.steps) if s.kind == "tool")
    step = timeline.steps[row]
    x = (timeline.starts[row] + timeline.ends[row]) / 2
    scene = timeline.getViewBox().mapViewToScene(QPointF(x, step.depth))
    point = timeline.mapFromScene(scene)
    qtbot.mouseClick(
        timeline.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(point.x(), point.y())
    )
    qtbot.waitUntil(lambda: window.tree.currentIndex().isValid())
    current = window.tree.currentIndex()
    assert window.tree_model.steps[window.tree_model._node(current)].id == step.id
    qtbot.waitUntil(lambda: window.detail.step is not None and window.detail.step.id == step.id)
    assert "selection" in timeline._overlay_items


def test_tree_selection_shows_details_as_plain_text(window, qtbot, tmp_path):
    records = [
        {"type": "header", "format": "tracedesk", "version": 1},
        {"type": "run", "id": "html-run", "name": "html"},
        {"type": "step", "run_id": "html-run", "id": "s1", "kind": "llm", "name": "chat",
         "output": "<b>not bold</b><script>alert(1)</script>", "start_ns": 1, "end_ns": 2},
    ]  # fmt: skip
    path = tmp_path / "html.jsonl"
    path.write_bytes(b"".join(__import__("orjson").dumps(r) + b"\n" for r in records))
    task = window.import_files([path])
    qtbot.waitSignal(task.signals.done, timeout=10_000)
    qtbot.waitUntil(lambda: idle(window))
    open_run(window, qtbot, lambda r: r.id == "html-run")
    show_step(window, qtbot, "s1")
    view = window.detail.views["Output"]
    assert view.text.toPlainText() == "<b>not bold</b><script>alert(1)</script>"


def test_incident_highlights_its_steps(window, qtbot):
    open_run(window, qtbot, lambda r: r.worst_severity == "error")
    window.incidents.selectRow(0)
    incident = window.incidents_model.rows[0]
    finding_steps = set(incident.step_ids)
    assert window.tree_model.highlighted == finding_steps
    # The table names steps as the tree does, and the tooltip lists the evidence.
    steps_cell = window.incidents_model.index(0, 2).data()
    assert incident.step_ids[0] not in steps_cell
    names = [window.tree_model.steps[window.tree_model.by_id[i]].name for i in incident.step_ids]
    expected = {f"{names.count(n)}× {n}" if names.count(n) > 1 else n for n in names}
    assert set(steps_cell.split(", ")) == expected
    tooltip = window.incidents_model.index(0, 1).data(Qt.ItemDataRole.ToolTipRole)
    assert incident.message.split("'")[0] in tooltip and "wasted" in tooltip
    assert "loop" in window.timeline._overlay_items
    current = window.tree_model.steps[window.tree_model._node(window.tree.currentIndex())]
    assert current.id in finding_steps


@pytest.mark.parametrize("in_parts", [False, True])
def test_import_through_the_worker_with_progress(window, qtbot, tmp_path, monkeypatch, in_parts):
    """An import off the UI thread; ``in_parts``: read by worker processes started from
    the application's process, as a big file is."""
    if in_parts:
        monkeypatch.setattr(os, "cpu_count", lambda: 2)
        monkeypatch.setattr(ingest_module, "PARALLEL_BYTES", 0)
    parts_read = []
    close = reader_process.Workers.close
    monkeypatch.setattr(reader_process.Workers, "close",
                        lambda self: (parts_read.append(self.parts), close(self)))  # fmt: skip
    path = tmp_path / "more.jsonl"
    with path.open("wb") as out:
        out.writelines(native_lines(generate(200, seed=11)))
    seen = []
    report = MainWindow._import_progress
    monkeypatch.setattr(MainWindow, "_import_progress",
                        lambda self, done, total: (seen.append((done, total)), report(self, done, total)))  # fmt: skip
    task = window.import_files([path])
    assert window.progress.isVisible() and window.cancel_button.isVisible()
    with qtbot.waitSignal(task.signals.done, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: idle(window))
    assert seen and seen[-1][0] == seen[-1][1] == path.stat().st_size
    assert not window.progress.isVisible()
    assert window.runs.model.rowCount() == 230
    assert window.last_import[-1].runs == 200
    assert "200 runs" in window.import_report()
    assert window.recent_files()[0] == str(path)
    assert parts_read == ([2] if in_parts else [])


def test_cancel_leaves_the_database_unchanged(window, qtbot, tmp_path):
    path = tmp_path / "big.jsonl"
    with path.open("wb") as out:
        out.writelines(native_lines(generate(300, seed=5)))
    with Store(window.db_path) as store:
        before = snapshot(store)
    # Nothing else writing, so that the import starts at once: a cancelled import that is
    # still queued is dropped without a word (a loaded machine showed it).
    qtbot.waitUntil(lambda: idle(window) and window.jobs.writing is None)
    task = window.import_files([path])
    window.cancel_import()  # before the worker reads a record
    with qtbot.waitSignal(task.signals.failed, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: idle(window))
    with Store(window.db_path) as store:
        assert snapshot(store) == before
    assert "cancelled" in window.statusBar().currentMessage()


def test_bad_file_shows_an_error_naming_file_and_line(window, qtbot, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type":"header","format":"tracedesk","version":1}\n{"type": "step", "id": \n')
    window.import_files([bad])  # it may fail before a signal could be waited for
    qtbot.waitUntil(lambda: window.last_message is not None, timeout=10_000)
    box = window.last_message
    assert box.textFormat() == Qt.TextFormat.PlainText and box.isVisible()
    assert f"{bad}: line 2: malformed JSON" in box.text() and "unchanged" in box.text()


def test_drop_files_onto_the_window(window, qtbot):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(FIXTURES / "formats" / "langsmith_runs.jsonl"))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)  # fmt: skip
    window.dropEvent(event)
    qtbot.waitUntil(lambda: idle(window) and window.runs.model.rowCount() == 31, timeout=10_000)


def test_export_cost_summary(window, qtbot, tmp_path):
    run_id = open_run(window, qtbot)
    dialog = ExportDialog(True, 1)
    qtbot.addWidget(dialog)
    dialog.by.setCurrentText("model")
    dialog.format.setCurrentText("CSV")
    scope, by, fmt = dialog.choice()
    assert (scope, by, fmt) == ("current", "model", "csv")
    target = tmp_path / "costs.csv"
    window.export_cost_summary(target, scope, by, fmt)  # written in a worker, whole or not at all
    qtbot.waitUntil(target.exists)
    rows = list(csv.DictReader(target.open()))
    with Store(window.db_path) as store:
        assert Decimal(rows[-1]["cost_usd"]) == store.get_run(run_id).cost
    window.export_cost_summary(tmp_path / "all.md", "all", "kind", "md")
    qtbot.waitUntil((tmp_path / "all.md").exists)
    assert (tmp_path / "all.md").read_text().startswith("# Cost summary by kind")


def test_lazy_tree_fetches_rows_on_demand(qtmodeltester):
    rows = [("root", None, 0, "agent", "root", 0, 10, "ok", 0, 0, None, None, None)] + [
        (f"s{i}", "root", 1, "tool", f"t{i}", i, i + 1, "ok", 0, 0, None, None, "t")
        for i in range(1500)
    ]
    model = StepTreeModel()
    model.load(step_rows(rows))
    root = model.index(0, 0)
    assert model.rowCount(root) == StepTreeModel.CHUNK and model.canFetchMore(root)
    index = model.index_of("s1400")
    assert index.isValid() and model.data(index) == "t1400"
    qtmodeltester.check(model)


def test_layout_and_recent_files_are_remembered(window, qtbot, tmp_path):
    window.detail_dock.hide()
    window.close()
    again = MainWindow(window.db_path, window.settings)
    qtbot.addWidget(again)
    library_shown(again, qtbot)
    assert again.detail_dock.isHidden()
    assert again.recent_files() == window.recent_files()


def test_self_test_renders_the_window(qapp):
    assert self_test() == 0


def test_screenshots_script(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "screenshots", Path(__file__).parents[1] / "tools" / "screenshots.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    shots = module.take(tmp_path)
    assert [p.name for p in shots] == [
        "main-window.png", "cost-detail.png", "loop-highlighted.png", "cost-charts.png",
        "cost-heat.png", "compare.png", "step-search.png", "step-search-filter.png",
        "session.png", "request-group.png", "imported-monocle.png", "imported-cache-write.png",
        "listening.png",
    ]  # fmt: skip
    assert all(p.stat().st_size > 10_000 for p in shots)


def test_compare_two_runs_keeps_both_sides_in_step(window, qtbot, qtmodeltester):
    rows = window.runs.model.rows
    storm = next(r.id for r in rows if r.worst_severity == "error")
    same = window.request_group(storm)
    assert len(same) >= 2 and storm in same
    # Select two runs of one request in the library (click, then Ctrl+click), then compare.
    window.runs.select_run(same[0])
    proxy = window.runs.proxy
    index = next(
        proxy.index(r, 0)
        for r in range(proxy.rowCount())
        if proxy.index(r, 0).data(RUN_ID_ROLE) == storm
    )
    window.runs.table.scrollTo(index)
    rect = window.runs.table.visualRect(index)
    qtbot.mouseClick(window.runs.table.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.ControlModifier, rect.center())  # fmt: skip
    assert sorted(window.runs.selected_run_ids()) == sorted({same[0], storm})
    view = opened_view(window, qtbot, window.compare_selected)
    qtmodeltester.check(view.models["a"])
    comparison = view.comparison
    assert comparison.first_divergence is not None
    # Click a step on side A: its partner is selected on side B.
    pair = next(
        p for p in comparison.rows() if p.a is not None and p.b is not None and p.depth == 2
    )
    tree_a = view.trees["a"]
    index_a = view.models["a"].index_of_step(pair.a.id)
    tree_a.scrollTo(index_a)
    rect = tree_a.visualRect(index_a)
    qtbot.mouseClick(tree_a.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    current_b = view.trees["b"].currentIndex()
    assert view.models["b"].pair(current_b).b.id == pair.b.id
    assert "selection" in view.timelines["b"]._overlay_items
    qtbot.waitUntil(lambda: view.diff.toPlainText().startswith(("--- A input", "input: the same")))
    assert "cost" in view.summary.text() and "vs" in view.summary.text()
    assert "◆ first divergence" in view.summary.text()  # the legend of the markers
    view.diff.setPlainText("--- A output\n+++ B output\n@@ -1 +1 @@\n-old\n+new\n same")
    backgrounds = []
    block = view.diff.document().begin()
    while block.isValid():
        ranges = block.layout().formats()
        backgrounds.append(ranges[0].format.background().color().name() if ranges else None)
        block = block.next()
    assert backgrounds[:2] == [None, None] and backgrounds[-1] is None
    assert backgrounds[3] != backgrounds[4] and None not in backgrounds[2:5]


def test_request_group_shows_spread_and_paths(window, qtbot, qtmodeltester):
    run_id = open_run(window, qtbot, lambda r: r.worst_severity == "error")
    view = opened_view(window, qtbot, window.show_request_group)
    qtmodeltester.check(view.model)
    runs = window.request_group(run_id)
    assert view.model.rowCount() == len(runs)
    assert sum(len(g.run_ids) for g in view.groups) == len(runs)
    assert len(view.groups) < len(runs)  # some runs took the same path


def test_a_run_without_steps_opens(window, qtbot, tmp_path):
    path = tmp_path / "empty-trace.json"
    path.write_text('{"trace": {"id": "lonely", "name": "no observations", "timestamp": "2026-03-01T10:00:00Z"},'
                    ' "observations": []}')  # fmt: skip
    task = window.import_files([path])
    with qtbot.waitSignal(task.signals.done, timeout=10_000):
        pass
    qtbot.waitUntil(lambda: idle(window))
    open_run(window, qtbot, lambda r: r.id == "lonely")
    assert window.tree_model.rowCount() == 0 and window.timeline.steps == []
    window.timeline.grab()
    assert "0 steps" in window.run_header.text()


def test_the_collector_does_not_walk_the_library_or_the_shown_run(window, qtbot):
    """The runs library and the shown run's step rows are read once and kept: the cycle
    collector's passes over them stalled the window (150 ms for a full pass over 20k runs).
    Objects out of its reach are not in ``gc.get_objects()``."""
    import gc

    from tracedesk.core.model import Run
    from tracedesk.ui.models import StepRow

    open_run(window, qtbot, lambda r: r.step_count > 5)
    assert window.runs.model.rows and window.tree_model.steps
    walked = {type(o) for o in gc.get_objects()}
    assert Run not in walked and StepRow not in walked


def test_cost_charts_on_a_small_screen_leave_the_details_readable(window, qtbot):
    """At 1280x720 the charts grew to half the window and squeezed the details until
    their buttons lay over the payload and the summary was cut."""
    window.resize(1280, 720)
    open_run(window, qtbot, lambda r: r.incident_count)
    llm = next(s for s in window.tree_model.steps if s.kind == "llm" and s.cost_pusd)
    show_step(window, qtbot, llm.id)  # five lines of summary
    window.charts_dock.raise_()
    qtbot.wait(200)
    detail = window.detail
    assert detail.height() >= detail.minimumSizeHint().height()
    view = detail.views["Input"]
    assert view.copy.geometry().bottom() < view.stack.geometry().top()
    assert view.stack.height() >= 24  # a line of the payload
    summary = detail.summary
    assert summary.height() >= summary.heightForWidth(summary.width())  # every line of it


def test_charts_are_read_only_while_they_show(window, qtbot):
    """Behind the timeline (the default), the charts are not read for each run chosen: that
    work held up a step's details. Shown, they are read for the runs chosen now."""
    asked: list[list[str]] = []
    load = window.load_charts
    window.load_charts = lambda run_ids=None: (asked.append(window.runs.selected_run_ids()),
                                               load(run_ids))  # fmt: skip
    window.chart_timer.timeout.disconnect()
    window.chart_timer.timeout.connect(window.load_charts)
    assert window.charts_dock.visibleRegion().isEmpty()
    first = open_run(window, qtbot, lambda r: r.incident_count)
    second = open_run(window, qtbot, lambda r: r.id != first)
    qtbot.wait(400)  # past the timer that lets a selection settle
    assert asked == [] and window.charts.data is None
    window.charts_dock.raise_()
    qtbot.waitUntil(lambda: window.charts.data is not None)
    assert asked == [[second]]
    window.timeline_dock.raise_()
    open_run(window, qtbot, lambda r: r.id == first)
    qtbot.wait(400)
    assert asked == [[second]]  # hidden again: not read until shown
    window.charts_dock.raise_()
    qtbot.waitUntil(lambda: len(asked) == 2)
    assert asked[1] == [first]


def test_plots_follow_a_palette_change(window, qtbot):
    """Every chart follows at once: backgrounds, axes, titles and the values on the bars."""
    import pyqtgraph as pg
    from PySide6.QtGui import QColor, QPalette

    run_id = open_run(window, qtbot, lambda r: r.incident_count)
    window.load_charts([run_id])
    qtbot.waitUntil(lambda: window.charts.data is not None)
    dark = QPalette(window.palette())
    dark.setColor(QPalette.ColorRole.Base, QColor("#1e1e1e"))
    dark.setColor(QPalette.ColorRole.Text, QColor("#eeeeee"))
    window.setPalette(dark)
    qtbot.waitUntil(lambda: window.timeline.backgroundBrush().color().name() == "#1e1e1e")
    assert window.charts.plots["kind"].backgroundBrush().color().name() == "#1e1e1e"
    for plot in window.charts.plots.values():
        labels = [i for i in plot.getPlotItem().items if isinstance(i, pg.TextItem)]
        assert all(label.color.name() == "#eeeeee" for label in labels)
        assert "#eeeeee" in plot.getPlotItem().titleLabel.item.toHtml().lower()
    assert any(isinstance(i, pg.TextItem) for i in window.charts.plots["tool"].getPlotItem().items)


def test_changed_rules_are_applied_in_a_worker(window, qtbot, tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("[runaway]\nmax_steps = 3\n")
    from tracedesk.core.analysis.loops import Rules

    before = sum(r.incident_count for r in window.runs.model.rows)
    window.rules = Rules.load(user_file=path)
    window.reload()
    library_shown(window, qtbot)
    assert window.analysis_task is not None and "re-analysing" in window.status_label.text()
    # Analysed, and the library read again after it.
    qtbot.waitUntil(lambda: window.analysis_task is None and not window.library_pending,
                    timeout=30_000)  # fmt: skip
    assert sum(r.incident_count for r in window.runs.model.rows) > before


def test_empty_database_offers_the_demo(qtbot, tmp_path, monkeypatch):
    from tracedesk.ui.app import offer_demo

    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    win = MainWindow(tmp_path / "empty.db", settings)
    qtbot.addWidget(win)
    library_shown(win, qtbot)
    assert win.runs.model.rowCount() == 0
    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.Yes)
    offer_demo(win)
    qtbot.waitUntil(lambda: idle(win) and win.runs.model.rowCount() == 30, timeout=30_000)
    QThreadPool.globalInstance().waitForDone(10_000)


def test_no_query_the_gui_runs_scans_every_step(qtbot, tmp_path, monkeypatch):
    """Every statement the window sends while a user browses, compares and charts runs is
    planned with EXPLAIN QUERY PLAN: none may read the whole steps table."""
    from tracedesk.core.store import db as db_module

    statements: list[str] = []
    connect = db_module.sqlite3.connect

    def traced(*args, **kwargs):
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(db_module.sqlite3, "connect", traced)
    window = demo_window(qtbot, tmp_path)
    statements.clear()
    run_id = open_run(window, qtbot, lambda r: r.incident_count)
    window.select_step(window.tree_model.steps[3].id)
    window.charts_dock.raise_()
    same = window.request_group(run_id)
    opened_view(window, qtbot, lambda: window.compare_runs_by_id(same[0], same[-1]))
    window.runs.search.setText("weather")
    QThreadPool.globalInstance().waitForDone(10_000)
    qtbot.wait(200)
    selects = {s for s in statements if s.lstrip().upper().startswith("SELECT")}
    assert len(selects) >= 5 and any("FROM steps" in s for s in selects)
    with Store(window.db_path) as store:
        for sql in selects:
            plan = " / ".join(row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + sql))
            assert "SCAN steps" not in plan, f"{sql}\n  {plan}"


HOSTILE = [
    '<img src="file:///dev/zero">',
    "<a href='https://example.com'>click</a><b>bold</b>",
    "\x1b]0;pwned\x07\x1b[2K",
    "invoice \u202e4321 gnp.exe",
    "<table>" + "<tr><td>x</td></tr>" * 2000 + "</table>",
    "n" * 5000,
]


def test_trace_text_is_never_markup_and_never_too_long(qtbot, tmp_path):
    """Hostile names, errors and payloads: every tooltip is escaped plain text, every cell is
    bounded with its controls spelled out, labels are plain text, and the window keeps its
    width."""
    from tracedesk.ui.models import CELL_CHARS

    records = [HEADER, {"type": "run", "id": "evil", "name": HOSTILE[0], "request": HOSTILE[3]}]
    for i, text in enumerate(HOSTILE):
        records.append({"type": "step", "run_id": "evil", "id": f"s{i}", "kind": "tool",
                        "name": text, "tool_name": text, "status": "error", "error": text,
                        "start_ns": 1_000 * i, "end_ns": 1_000 * i + 500,
                        "output": "x" * 1_000_000 if i == 0 else {"k": text}})  # fmt: skip
    db = tmp_path / "hostile.db"
    with Store(db) as store:
        import_file(store, write_jsonl(tmp_path / "evil.jsonl", records))
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    window = MainWindow(db, settings)
    qtbot.addWidget(window)
    window.resize(1280, 720)
    window.show()
    library_shown(window, qtbot)
    assert window.runs.select_run("evil")
    qtbot.waitUntil(lambda: window.current_run == "evil")
    for step in window.tree_model.steps:
        window.select_step(step.id)
        qtbot.wait(10)
    models = [window.runs.model, window.tree_model, window.incidents_model,
              *(view.model for view in window.detail.views.values())]  # fmt: skip
    for model in models:
        for index in _indexes(model):
            text = model.data(index, Qt.ItemDataRole.DisplayRole)
            if isinstance(text, str):
                assert len(text) <= CELL_CHARS and "\x1b" not in text and "\u202e" not in text
            tip = model.data(index, Qt.ItemDataRole.ToolTipRole)
            if tip is not None:
                assert tip.startswith("<p style='white-space:pre-wrap'>") and "<img" not in tip
                assert "<a href" not in tip and "\x1b" not in tip and len(tip) < 30_000
    assert window.width() <= 1280
    assert window.run_header.textFormat() == Qt.TextFormat.PlainText
    assert window.status_label.textFormat() == Qt.TextFormat.PlainText
    assert "\u202e" not in window.windowTitle() and len(window.windowTitle()) < 120
    show_step(window, qtbot, "s0")
    shown = window.detail.views["Output"].text.toPlainText()
    assert len(shown) < 220_000 and max(len(line) for line in shown.split("\n")) <= 4_000
    assert not window.detail.views["Output"].show_all.isHidden()


def _indexes(model, parent=None):
    from PySide6.QtCore import QModelIndex

    parent = parent or QModelIndex()
    for row in range(model.rowCount(parent)):
        for column in range(model.columnCount(parent)):
            index = model.index(row, column, parent)
            yield index
            if column == 0 and model.rowCount(index):
                yield from _indexes(model, index)


def test_a_broken_settings_file_does_not_stop_the_app(qtbot, tmp_path, monkeypatch):
    config = tmp_path / "config"
    config.mkdir()
    (config / "pricing.json").write_text('{"models": {"gpt-x": {"input": "lots"}}}')
    (config / "loop_rules.toml").write_text("[runaway\n")
    monkeypatch.setattr("platformdirs.user_config_dir", lambda *a, **k: str(config))
    db = tmp_path / "gui.db"
    fill_with_demo(db)
    window = MainWindow(db, QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.last_message is not None)
    text = window.last_message.text()
    assert "pricing.json" in text and "loop_rules.toml" in text and "shipped settings" in text
    qtbot.waitUntil(lambda: window.runs.model.rowCount() == 30)  # read in a worker
    assert window.pricing.resolve("gpt-4o") is not None
    QThreadPool.globalInstance().waitForDone(10_000)


def _waterfall_pixel(window, step_id: str):
    """The colour in the middle of a step's waterfall bar, as painted on screen."""
    from tracedesk.ui.models import StepTreeModel

    index = window.tree_model.index_of(step_id).siblingAtColumn(StepTreeModel.WATERFALL)
    window.tree.scrollTo(index)
    rect = window.tree.visualRect(index)
    step = window.tree_model.steps[window.tree_model.by_id[step_id]]
    bar = window.waterfall.bar_rect(rect, step.start_ns, step.end_ns)
    image = window.tree.viewport().grab().toImage()
    return image.pixelColor(int(bar.center().x()), int(bar.center().y())).name()


def test_waterfall_rows_follow_the_tree_with_kind_colours_errors_and_incidents(window, qtbot):
    """Issue 15: one bar per visible tree row, where the step ran within the run; the
    chosen incident's steps take a colour no kind uses and the others are dimmed."""
    from tracedesk.ui.theme import INCIDENT_COLOR, KIND_COLORS
    from tracedesk.ui.waterfall import tick_step

    window.resize(1280, 720)
    open_run(window, qtbot, lambda r: r.worst_severity == "error")
    model = window.tree_model
    assert model.headerData(model.WATERFALL, Qt.Orientation.Horizontal) == "Waterfall"
    assert INCIDENT_COLOR not in KIND_COLORS.values()
    timed = [s for s in model.steps if s.start_ns is not None and s.end_ns is not None]
    first, last = min(timed, key=lambda s: s.start_ns), max(timed, key=lambda s: s.start_ns)
    end = max(s.end_ns for s in timed)
    assert model.origin_ns == first.start_ns and model.span_ns == end - first.start_ns
    # Bars sit on their rows: a later step's bar starts further right than an earlier one's.
    rect = window.tree.visualRect(model.index_of(first.id).siblingAtColumn(model.WATERFALL))
    early = window.waterfall.bar_rect(rect, first.start_ns, first.end_ns)
    late = window.waterfall.bar_rect(rect, last.start_ns, last.end_ns)
    assert early.left() < late.left() and late.right() <= rect.right()
    model_call = next(s for s in model.steps if s.kind == "llm" and s.status != "error")
    assert _waterfall_pixel(window, model_call.id) == KIND_COLORS["llm"].lower()

    window.incidents.selectRow(0)
    chosen = window.incidents_model.rows[0].step_ids
    assert _waterfall_pixel(window, chosen[0]) == INCIDENT_COLOR.lower()
    outside = next(s for s in model.steps if s.id not in chosen and s.kind == "llm" and s.start_ns)
    dimmed = _waterfall_pixel(window, outside.id)
    assert dimmed != KIND_COLORS["llm"].lower()  # blended with the background
    assert "chosen incident" in [
        w.text() for w in window.legend.findChildren(type(window.run_header))
    ]
    assert tick_step(22.4, 5) == 5 and tick_step(0.8, 4) == 0.2 and tick_step(0, 3) == 1.0


def test_cost_heat_colours_the_dearest_step_darkest(window, qtbot):
    from tracedesk.ui.waterfall import HEAT_HIGH, HEAT_LOW

    open_run(window, qtbot, lambda r: r.incident_count == 0 and r.cost)
    window.bar_colours.setCurrentIndex(1)
    model = window.tree_model
    priced = [s for s in model.steps if s.cost_pusd]
    dearest = max(priced, key=lambda s: s.cost_pusd)
    cheapest = min(priced, key=lambda s: s.cost_pusd)
    assert _waterfall_pixel(window, dearest.id) == HEAT_HIGH.name()
    assert _waterfall_pixel(window, cheapest.id) == HEAT_LOW.name()
    labels = [w.text() for w in window.legend.findChildren(type(window.run_header))]
    assert any(text.startswith("dearest $") for text in labels)


def test_incidents_sit_beside_the_tree_and_charts_read_in_dollars(window, qtbot):
    """Choosing an incident must not hide the timeline; charts tick in plain dollars and
    list every tool, free ones too, and what each incident wasted."""
    from tracedesk.ui.charts import UsdAxis

    assert window.incidents_dock not in window.tabifiedDockWidgets(window.timeline_dock)
    assert window.dockWidgetArea(window.incidents_dock) == Qt.DockWidgetArea.RightDockWidgetArea
    run_id = open_run(window, qtbot, lambda r: r.worst_severity == "error")
    window.load_charts([run_id])
    charts = window.charts
    qtbot.waitUntil(lambda: charts.data is not None)
    assert "—" in charts.plots["waste"].getPlotItem().titleLabel.text
    wasted = sum(i.wasted_cost for i in window.incidents_model.rows)
    title = charts.plots["waste"].getPlotItem().titleLabel.text
    assert f"{len(window.incidents_model.rows)} incident" in title
    assert format_usd(wasted) in title
    ticks = UsdAxis("bottom").tickStrings([0.0, 0.01, 0.02], 1.0, 0.01)
    assert ticks == ["$0", "$0.01", "$0.02"]
    tool_ticks = charts.plots["tool"].getAxis("left")._tickLevels[0]
    fetch_time = sum(
        s.end_ns - s.start_ns for s in window.tree_model.steps if s.name == "fetch_logs"
    )
    assert f"fetch_logs ×4 · {format_duration(fetch_time)}" in [label for _, label in tool_ticks]


def test_windows_open_within_the_screen(window, qtbot):
    screen = window.screen().availableGeometry()
    assert screen.contains(window.frameGeometry().topLeft())
    assert window.width() <= screen.width() and window.height() <= screen.height()
    open_run(window, qtbot, lambda r: r.worst_severity == "error")
    compare = opened_view(window, qtbot, window.compare_selected)
    assert compare.width() <= screen.width() and compare.height() <= screen.height()


def test_keys_walk_errors_and_incidents(window, qtbot):
    """F8 / Shift+F8 go to the next and previous failed step, F7 / Shift+F7 through the
    incidents, as real key presses on the window."""
    open_run(window, qtbot, lambda r: r.worst_severity == "error")
    model = window.tree_model
    failed = [s.id for s in model.steps if s.status == "error"]
    assert len(failed) >= 2
    window.tree.setFocus()
    qtbot.keyClick(window.tree, Qt.Key.Key_F8)
    current = lambda: model.steps[model._node(window.tree.currentIndex())].id  # noqa: E731
    assert current() == failed[0]
    qtbot.keyClick(window.tree, Qt.Key.Key_F8)
    assert current() == failed[1]
    qtbot.keyClick(window.tree, Qt.Key.Key_F8, Qt.KeyboardModifier.ShiftModifier)
    assert current() == failed[0]
    qtbot.keyClick(window.tree, Qt.Key.Key_F7)
    assert window.incidents.currentIndex().row() == 0
    assert model.highlighted == set(window.incidents_model.rows[0].step_ids)
    texts = [a.text() for a in window.runs.table.actions()]
    assert "&Compare selected runs" in texts and "Copy run &id" in texts
    toolbar = [a.text() for a in window.toolbar.actions() if not a.isSeparator()]
    assert toolbar == ["&Open traces…", "&Export cost summary…", "&Compare selected runs",
                       "Runs of this &request", "Previous e&rror", "Next &error",
                       "Previous i&ncident", "Next &incident"]  # fmt: skip
    window.copy_run_action.trigger()
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text() == window.current_run


def test_request_group_rows_open_the_run_or_a_compare(window, qtbot):
    run_id = open_run(window, qtbot, lambda r: r.worst_severity == "error")
    view = opened_view(window, qtbot, window.show_request_group)
    other = next(r.id for r in view.model.rows if r.id != run_id)
    row = next(i for i, r in enumerate(view.model.rows) if r.id == other)
    rect = view.table.visualRect(view.model.index(row, 0))
    qtbot.mouseClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(view.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.current_run == other)
    before = len(window.open_views)
    view.table.selectRow(0)
    view.table.selectionModel().select(
        view.model.index(1, 0), view.table.selectionModel().SelectionFlag.Select
        | view.table.selectionModel().SelectionFlag.Rows)  # fmt: skip
    compare = opened_view(window, qtbot, view._compare_selected)
    assert len(window.open_views) == before + 1 and compare is window.open_views[-1]
    assert {compare.comparison.run_a.id, compare.comparison.run_b.id} == {
        view.model.rows[0].id,
        view.model.rows[1].id,
    }


def test_open_recent_lists_imported_files_only_and_goes_to_their_runs(window, qtbot, tmp_path):
    good = tmp_path / "good.json"
    good.write_bytes((REAL_FIXTURES / "langfuse" / "agent-prism_langfuse-1.json").read_bytes())
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    for path in (good, bad):
        window.import_files([path])
        qtbot.waitUntil(lambda: idle(window), timeout=10_000)
    window.import_files([good], remember=False)  # as the demo is imported
    assert window.recent_files() == [str(good)]
    window.runs.select_run(window.runs.model.rows[-1].id)
    window.open_recent(str(good))
    with Store(window.db_path) as store:
        expected = set(store.run_ids_from_file(str(good)))
    qtbot.waitUntil(lambda: set(window.runs.selected_run_ids()) == expected)
    assert expected


def test_runs_sort_in_the_model_keep_the_selection_and_survive_a_reload(window, qtbot):
    """Issue 15: sorting 20k runs through the proxy asked ``data`` 600k times; the model
    sorts by one key per run, the selection follows its run, a reload keeps the order."""
    table, proxy = window.runs.table, window.runs.proxy
    run_id = open_run(window, qtbot, lambda r: r.worst_severity == "error")
    header = table.horizontalHeader()
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(header.sectionViewportPosition(5) + 10, 5))  # fmt: skip
    costs = [window.runs.model.rows[proxy.mapToSource(proxy.index(r, 0)).row()].cost or 0
             for r in range(proxy.rowCount())]  # fmt: skip
    descending = header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
    assert header.sortIndicatorSection() == 5 and costs == sorted(costs, reverse=descending)
    assert len(set(costs)) > 10
    assert window.runs.selected_run_ids() == [run_id]
    order = [proxy.index(r, 0).data(RUN_ID_ROLE) for r in range(proxy.rowCount())]
    window.reload()
    library_shown(window, qtbot)
    assert [proxy.index(r, 0).data(RUN_ID_ROLE) for r in range(proxy.rowCount())] == order
    window.runs.group.setChecked(True)
    header = table.horizontalHeader()
    assert (header.sortIndicatorSection(), header.sortIndicatorOrder()) == (
        1, Qt.SortOrder.AscendingOrder)  # fmt: skip
    by_id = {r.id: r for r in window.runs.model.rows}
    shown = [by_id[proxy.index(r, 0).data(RUN_ID_ROLE)] for r in range(proxy.rowCount())]
    keys = [((r.request or "").lower(), r.start_ns or 0) for r in shown]
    assert keys == sorted(keys)  # runs of one request together, oldest first
    assert window.runs.selected_run_ids() == [run_id]


def test_a_database_that_cannot_be_opened_is_a_message_not_a_traceback(qapp, tmp_path, monkeypatch):
    from tracedesk.ui import app as app_module

    shown: list[str] = []
    monkeypatch.setattr(app_module.QMessageBox, "exec", lambda box: shown.append(box.text()))
    folder = tmp_path / "a-folder.db"
    folder.mkdir()
    assert app_module.run_app(db=folder) == 1
    assert shown == [f"{folder}\n\nthis is a folder, not a database file"]


def test_jobs_drop_stale_reads_and_write_one_at_a_time(qtbot):
    """Issue 15: an older chart result must not land after a newer one, and an import and
    a re-analysis must not both hold the write lock."""
    import threading
    import time

    from PySide6.QtCore import QObject

    from tracedesk.ui.workers import Jobs, Task

    owner = QObject()
    jobs = Jobs(owner)
    shown: list[str] = []
    release_slow = threading.Event()
    jobs.read("charts", lambda: (release_slow.wait(5), "old")[1], shown.append, shown.append)
    jobs.read("charts", lambda: "new", shown.append, shown.append)
    qtbot.waitUntil(lambda: shown == ["new"])
    release_slow.set()
    QThreadPool.globalInstance().waitForDone(5000)
    qtbot.wait(50)
    assert shown == ["new"]  # the old result arrived last and was dropped

    running, most, order = [0], [0], []
    lock = threading.Lock()

    def writer(name):
        def work(report, cancelled):
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1
            return name

        return Task(work)

    done: list[str] = []
    for name in ("import a", "analysis", "import b"):
        jobs.write(name.split()[0], writer(name), lambda n=name: order.append(n),
                   done.append, done.append)  # fmt: skip
    assert jobs.queued("import") == 1  # "import a" runs, "import b" waits behind "analysis"
    jobs.cancel("import")  # drops "import b", asks "import a" to stop (it ignores it)
    qtbot.waitUntil(lambda: len(done) == 2, timeout=5000)
    assert order == done == ["import a", "analysis"] and most[0] == 1


def test_a_huge_output_opens_as_its_first_screen_and_reads_whole_on_demand(window, qtbot, tmp_path):
    """Issue 14: a value of many megabytes shows its first screen without being read and
    decoded whole (200 ms for 50 MB); Show all and Copy read it whole."""
    from PySide6.QtGui import QGuiApplication

    big = "y" * 300_000 + "THE END"
    records = [HEADER, {"type": "run", "id": "big-output", "name": "big"},
               {"type": "step", "run_id": "big-output", "id": "s1", "kind": "tool",
                "name": "dump", "output": big, "input": {"q": "small"}, "start_ns": 1,
                "end_ns": 2}]  # fmt: skip
    task = window.import_files([write_jsonl(tmp_path / "big.jsonl", records)])
    qtbot.waitSignal(task.signals.done, timeout=10_000)
    qtbot.waitUntil(lambda: idle(window))
    open_run(window, qtbot, lambda r: r.id == "big-output")
    show_step(window, qtbot, "s1")
    output, inputs = window.detail.views["Output"], window.detail.views["Input"]
    assert output.partial and "THE END" not in output.full_text
    assert not output.show_all.isHidden() and "start of a longer value" in output.note.text()
    assert not inputs.partial and '"q": "small"' in inputs.full_text  # small: decoded
    output.copy.click()
    qtbot.waitUntil(lambda: QGuiApplication.clipboard().text() == big)
    assert not output.partial and output.full_text == big
    output.show_all.click()
    assert output.text.toPlainText().replace("\n", "").endswith("THE END")


def test_the_details_explain_a_steps_cost_line_by_line(window, qtbot):
    """Issue 16: the cost detail shows each usage type at its price, and where the price
    came from, worked out from the stored cost parts in the worker that reads the step."""
    open_run(window, qtbot, lambda r: (r.cost or 0) > 0)
    llm = next(s for s in window.tree_model.steps if s.kind == "llm" and s.cost_pusd)
    show_step(window, qtbot, llm.id)
    cost = window.detail.views["Cost"].full_text
    assert " in × $" in cost and "/M" in cost and "\n=$" in cost.replace(" ", "")
    assert "price: genai-prices" in cost and "see Cost" in window.detail.summary.text()
    lines = cost.splitlines()
    total = Decimal(lines[lines.index(next(x for x in lines if "= $" in x))].split("$")[1])
    parts = [Decimal(x.rsplit("$", 1)[1]) for x in lines if "×" in x]
    assert len(parts) >= 2 and abs(sum(parts) - total) <= Decimal("0.000001") * len(parts)
    tool = next(s for s in window.tree_model.steps if s.kind == "tool" and not s.cost_pusd)
    show_step(window, qtbot, tool.id)
    assert not window.detail.tabs.isTabEnabled(window.detail.TABS.index("Cost"))
