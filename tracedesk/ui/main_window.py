"""The main window: runs library, step tree, timeline, details, incidents and cost charts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import (
    QByteArray,
    QEvent,
    QItemSelectionModel,
    QModelIndex,
    QSettings,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import QAction, QDragEnterEvent, QDropEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTableView,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from tracedesk import __version__
from tracedesk.core.analysis.compare import request_fingerprint
from tracedesk.core.analysis.cost import StepCost, explain_cost, explain_stored
from tracedesk.core.analysis.loops import Rules, RulesError
from tracedesk.core.analysis.pricing import Pricing, PricingError
from tracedesk.core.collector import collector_paused, freeze_alive
from tracedesk.core.export import (
    COST_WRITERS,
    atomic_output,
    cost_text,
    waste_text,
    write_native,
    write_text_atomically,
)
from tracedesk.core.importers.base import TraceFormatError
from tracedesk.core.ingest import (
    PRICING_META_KEY,
    RULES_META_KEY,
    ImportCancelled,
    import_file,
    refresh_costs,
    refresh_incidents,
)
from tracedesk.core.model import ImportResult, Incident, Run, Status, Step, severity_rank
from tracedesk.core.search import SearchError
from tracedesk.core.store import Store
from tracedesk.core.summary import GROUPINGS, summarize
from tracedesk.core.text import format_count, format_duration, incidents_text, plural, shorten
from tracedesk.ui.charts import ChartData, CostChartsView, chart_data
from tracedesk.ui.compare import (
    CompareData,
    CompareView,
    RequestGroupView,
    read_comparison,
    read_request_group,
)
from tracedesk.ui.detail import SHOWN_CHARS, DetailPane
from tracedesk.ui.listen import install as install_live_capture
from tracedesk.ui.models import (
    RUN_ID_ROLE,
    STEP_ID_ROLE,
    IncidentsModel,
    RunsFilterProxy,
    RunsTableModel,
    StepRow,
    StepTreeModel,
    search_text,
    step_rows,
)
from tracedesk.ui.search import SEARCH_DELAY_MS, StepSearchBar
from tracedesk.ui.search import focus as focus_search_bar
from tracedesk.ui.sessions import SessionView, read_session
from tracedesk.ui.theme import fit_to_screen, plain_label
from tracedesk.ui.timeline import TimelineView
from tracedesk.ui.waterfall import Legend, WaterfallDelegate, WaterfallHeader
from tracedesk.ui.workers import Jobs, Task

MAX_RECENT = 10
LAYOUT_VERSION = 2  # saved dock layouts of older versions are not restored
SINCE_CHOICES = (("Any time", 0), ("Last 24 hours", 1), ("Last 7 days", 7), ("Last 30 days", 30))
EXPORT_FORMATS = {"CSV": "csv", "JSON": "json", "Markdown": "md"}


class RunsPanel(QWidget):
    """Search box, filters and the runs table."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.search = QLineEdit(
            placeholderText="Search name, request, model, tool  (Ctrl+F)", clearButtonEnabled=True
        )
        self.status = QComboBox()
        self.status.addItems(["Any status", "ok", "error", "unset"])
        self.incidents_only = QCheckBox("With incidents")
        self.since = QComboBox()
        self.since.addItems([label for label, _ in SINCE_CHOICES])
        self.group = QCheckBox("Group by request", toolTip="Keep runs of the same request together")
        self.in_steps = QCheckBox(
            "Search steps",
            toolTip="Find runs with steps matching the search language"
            " (tool:fetch_url, status:error, cost>0.01, words …)",
        )
        self.step_query_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self.model = RunsTableModel(self)
        self.proxy = RunsFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(9, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        # The request says what a run was for: it takes the width that is left.
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for column, width in enumerate((190, 240, 150, 50, 60, 80, 70, 50, 150, 135)):
            self.table.setColumnWidth(column, width)
        filters = QHBoxLayout()  # one line with the search: more rows fit on a small screen
        filters.addWidget(self.search, 1)
        for widget in (self.in_steps, self.status, self.since, self.incidents_only, self.group):
            filters.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(2)
        layout.addLayout(filters)
        layout.addWidget(self.table)
        self.search.textChanged.connect(self._search_changed)
        self.in_steps.toggled.connect(lambda _on: self._search_changed(self.search.text()))
        self.status.currentIndexChanged.connect(
            lambda i: self.proxy.set_filters(status="" if i == 0 else self.status.currentText()))  # fmt: skip
        self.incidents_only.toggled.connect(lambda on: self.proxy.set_filters(incidents_only=on))
        self.since.currentIndexChanged.connect(self._since_changed)
        self.group.toggled.connect(self._group_changed)

    def _search_changed(self, text: str) -> None:
        """Plain text filters the list here; in steps, the window runs the query in a
        worker (``step_query_timer``) and filters by the runs it finds."""
        if self.in_steps.isChecked() and text.strip():
            self.proxy.set_filters(text="")
            self.step_query_timer.start()
        else:
            self.step_query_timer.stop()
            self.proxy.set_filters(text=text, run_ids=None)

    def _since_changed(self, index: int) -> None:
        days = SINCE_CHOICES[index][1]
        self.proxy.set_filters(since_ns=int((time.time() - days * 86400) * 1e9) if days else 0)

    def _group_changed(self, on: bool) -> None:
        if on:  # request first, then start time: runs of one request together, oldest first
            self.model.group_by_request()
            self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)  # the header says so
        else:
            self.table.sortByColumn(9, Qt.SortOrder.DescendingOrder)

    def selected_run_ids(self) -> list[str]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return [index.data(RUN_ID_ROLE) for index in rows]

    def select_runs(self, run_ids: list[str]) -> None:
        """Select these runs, the first current and in view."""
        wanted = set(run_ids)
        selection = self.table.selectionModel()
        selection.clearSelection()
        first = None
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if index.data(RUN_ID_ROLE) in wanted:
                flags = (
                    QItemSelectionModel.SelectionFlag.Select
                    | QItemSelectionModel.SelectionFlag.Rows
                )
                selection.select(index, flags)
                if first is None or index.data(RUN_ID_ROLE) == run_ids[0]:
                    first = index
        if first is not None:
            flags = (
                QItemSelectionModel.SelectionFlag.Current | QItemSelectionModel.SelectionFlag.Rows
            )
            selection.setCurrentIndex(first, flags)
            self.table.scrollTo(first)

    def select_run(self, run_id: str) -> bool:
        self.select_runs([run_id])
        return self.selected_run_ids() == [run_id]


def run_summary(run: Run) -> str:
    """One line about a run for the header above its step tree."""
    parts = [shorten(run.name or run.id, 120), plural(run.step_count, "step"),
             f"{format_count(run.input_tokens + run.output_tokens)} tokens",
             cost_text(run.cost, run.unpriced_steps), format_duration(run.duration_ns), run.status]  # fmt: skip
    if run.incident_count:
        parts.append(incidents_text(run.incident_count, run.worst_severity))
        parts.append(f"wasted {waste_text(run)}")
    text = "  ·  ".join(parts)
    if run.request:
        text += "\n" + shorten(run.request, 300)
    return text


class ExportDialog(QDialog):
    """Scope, grouping and format of a cost summary export."""

    def __init__(self, has_run: bool, selected: int, parent=None):
        super().__init__(parent)
        self.setWindowTitle("Export cost summary")
        self.scope = QComboBox()
        if has_run:
            self.scope.addItem("Current run", "current")
        if selected > 1:
            self.scope.addItem(f"Selected runs ({selected})", "selected")
        self.scope.addItem("All runs", "all")
        self.by = QComboBox()
        self.by.addItems(GROUPINGS)
        self.format = QComboBox()
        self.format.addItems(list(EXPORT_FORMATS))
        form = QFormLayout(self)
        form.addRow("Runs", self.scope)
        form.addRow("Group by", self.by)
        form.addRow("Format", self.format)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def choice(self) -> tuple[str, str, str]:
        return (
            self.scope.currentData(),
            self.by.currentText(),
            EXPORT_FORMATS[self.format.currentText()],
        )


class MainWindow(QMainWindow):
    """Every database read runs in a worker (``self.jobs``) on its own connection, and its
    result is shown when it arrives; the signals say when, for tests and tools."""

    library_loaded = Signal()
    view_opened = Signal(QWidget)  # a compare or request window, once its data is read

    def __init__(self, db_path: Path, settings: QSettings | None = None):
        super().__init__()
        self.db_path = Path(db_path)
        self.settings = settings or QSettings("tracedesk", "tracedesk")
        # A broken user file must not keep the app from starting: say so, use the shipped one.
        self.config_problems: list[str] = []
        try:
            self.pricing = Pricing.load()
        except PricingError as exc:
            self.config_problems.append(str(exc))
            self.pricing = Pricing.load(use_user_file=False)
        try:
            self.rules = Rules.load()
        except RulesError as exc:
            self.config_problems.append(str(exc))
            self.rules = Rules.load(use_user_file=False)
        self.current_run: str | None = None  # the run shown
        self.loading_run: str | None = None  # the run asked for last
        self.jobs = Jobs(self)  # every background read and write
        self.library_pending = False  # a read of the runs library is on its way
        self.select_first_run = False  # after an import into an empty window
        self.import_task: Task | None = None  # the import running now
        self.analysis_task: Task | None = None  # re-pricing and re-checking all runs
        self.unlisted: set[Path] = set()  # imported, but not for Open recent (the demo)
        self.last_import: list[ImportResult] = []
        self.last_message: QMessageBox | None = None
        self.open_views: list[QWidget] = []  # compare and request windows kept alive
        self.setWindowTitle(f"tracedesk — {self.db_path.name}")
        self.setAcceptDrops(True)
        fit_to_screen(self, 1400, 860)
        self.layout_restored = False
        self.bottom_height: int | None = None  # the timeline's height before charts grew it
        self.incidents_height: int | None = None  # before a run without incidents shrank it
        self.chart_timer = QTimer(self, singleShot=True, interval=150)
        self.chart_timer.timeout.connect(self.load_charts)
        # Charts are read only while their dock shows (the timeline hides them by default):
        # read for nothing, the charts of a 100k-step run held up the step details.
        self.charts_stale = True
        self._build_views()
        self._build_menus()
        self._build_status_bar()
        self._restore_layout()
        self.apply_palette()
        self.reload()
        if self.config_problems:
            QTimer.singleShot(0, self.show_config_problems)

    def show_config_problems(self) -> None:
        self.message(QMessageBox.Icon.Warning, "Settings not used",
                     "\n\n".join(self.config_problems) + "\n\ntracedesk uses its shipped"
                     " settings instead until the file is fixed.")  # fmt: skip

    # -- construction -----------------------------------------------------------------

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title.replace(" ", "_").lower())
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _build_views(self) -> None:
        self.runs = RunsPanel()
        self.tree_model = StepTreeModel(self)
        self.tree = QTreeView()
        self.tree.setHeader(WaterfallHeader(self.tree_model, self.tree))
        self.tree.setModel(self.tree_model)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self.waterfall = WaterfallDelegate(self.tree_model, self.tree)
        self.tree.setItemDelegateForColumn(StepTreeModel.WATERFALL, self.waterfall)
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, width in ((0, 250), (1, 62), (2, 66), (3, 56), (4, 78), (5, 72)):
            self.tree.setColumnWidth(column, width)
        self.bar_colours = QComboBox()
        self.bar_colours.setToolTip("Colour the waterfall's bars by step kind or by cost")
        self.bar_colours.addItems(["Colour by kind", "Colour by cost"])
        self.bar_colours.currentIndexChanged.connect(self._bar_colours_changed)
        self.legend = Legend()
        self.timeline = TimelineView()
        self.detail = DetailPane()
        self.detail.loader = self._read_whole_step
        self.incidents_model = IncidentsModel(self)
        self.incidents = QTableView()
        self.incidents.setModel(self.incidents_model)
        self.incidents.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.incidents.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.incidents.verticalHeader().setVisible(False)
        self.incidents.setWordWrap(True)
        incidents_header = self.incidents.horizontalHeader()
        incidents_header.setStretchLastSection(False)
        incidents_header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for column, width in ((0, 58), (2, 110), (3, 120)):
            self.incidents.setColumnWidth(column, width)
        self.incidents.setColumnHidden(4, True)  # the evidence is in each row's tooltip
        self.charts = CostChartsView()
        # Small minimum heights, so that a 720-pixel screen still shows rows of runs; the
        # details keep their own (a line of payload under its buttons), never overlapping.
        self.charts.setMinimumHeight(80)

        self.run_header = plain_label("Select a run.")
        self.run_header.setContentsMargins(6, 4, 6, 2)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.run_header)
        above_tree = QHBoxLayout()
        above_tree.setContentsMargins(4, 0, 4, 0)
        above_tree.addWidget(self.bar_colours)
        above_tree.addWidget(self.legend, 1)
        layout.addLayout(above_tree)
        self.step_search = StepSearchBar()
        layout.addWidget(self.step_search)
        layout.addWidget(self.tree)
        self.step_search.search.connect(lambda _query: self.search_steps())
        self.step_search.mode_changed.connect(lambda _on: self._apply_matches())
        self.step_search.step.connect(self.go_to_match)
        self.runs.step_query_timer.timeout.connect(self.search_runs)
        self.match_ids: set[str] = set()  # the current run's steps the search found
        self.index_task: Task | None = None  # building the search index
        self.index_failed = False  # then searches do without it
        self.setCentralWidget(central)
        self.runs_dock = self._dock("Runs", self.runs, Qt.DockWidgetArea.TopDockWidgetArea)
        self.detail_dock = self._dock("Details", self.detail, Qt.DockWidgetArea.RightDockWidgetArea)
        self.incidents_dock = self._dock(
            "Incidents", self.incidents, Qt.DockWidgetArea.RightDockWidgetArea
        )
        # Incidents sit beside the steps, above the details, so that choosing one keeps
        # the tree, its waterfall and the timeline in view.
        self.splitDockWidget(self.incidents_dock, self.detail_dock, Qt.Orientation.Vertical)
        self.timeline_dock = self._dock(
            "Timeline by depth", self.timeline, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.charts_dock = self._dock(
            "Cost charts", self.charts, Qt.DockWidgetArea.BottomDockWidgetArea
        )
        self.tabifyDockWidget(self.timeline_dock, self.charts_dock)
        self.timeline_dock.raise_()
        self.charts_dock.visibilityChanged.connect(self._charts_shown)
        self.resizeDocks([self.runs_dock], [230], Qt.Orientation.Vertical)
        self.resizeDocks([self.timeline_dock], [240], Qt.Orientation.Vertical)
        self.resizeDocks([self.detail_dock], [460], Qt.Orientation.Horizontal)
        self.resizeDocks([self.incidents_dock, self.detail_dock], [150, 400],
                         Qt.Orientation.Vertical)  # fmt: skip
        self.default_state = self.saveState()

        self.runs.table.selectionModel().currentRowChanged.connect(self._current_run_changed)
        self.runs.table.selectionModel().selectionChanged.connect(self._runs_selection_changed)
        self.tree.selectionModel().currentChanged.connect(self._tree_current_changed)
        self.timeline.step_clicked.connect(self.select_step)
        self.incidents.selectionModel().currentRowChanged.connect(self._incident_chosen)

    def _action(self, text: str, slot, shortcut=None, menu=None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        if menu is not None:
            menu.addAction(action)
        self.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        open_action = self._action(
            "&Open traces…", self.open_files_dialog, QKeySequence.StandardKey.Open, file_menu
        )
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addSeparator()
        self.export_action = self._action(
            "&Export cost summary…", self.export_dialog, "Ctrl+E", file_menu
        )
        self._action("Export run as &JSONL…", self.export_run_dialog, None, file_menu)
        self._action("Save charts as &PNG…", self.save_charts_png, None, file_menu)
        self._action("Last import &report…", self.show_import_report, None, file_menu)
        file_menu.addSeparator()
        self._action("&Quit", self.close, QKeySequence.StandardKey.Quit, file_menu)
        runs_menu = bar.addMenu("&Runs")
        self.compare_action = self._action(
            "&Compare selected runs", self.compare_selected, "Ctrl+D", runs_menu
        )
        self.request_action = self._action(
            "Runs of this &request", self.show_request_group, "Ctrl+G", runs_menu
        )
        self.copy_run_action = self._action("Copy run &id", self.copy_run_id, None, runs_menu)
        self.session_action = self._action(
            "Runs of this &session", self.show_session, "Ctrl+Shift+S", runs_menu
        )
        go = bar.addMenu("&Go")
        next_error = self._action("Next &error", lambda: self.go_to_error(1), "F8", go)
        previous_error = self._action(
            "Previous e&rror", lambda: self.go_to_error(-1), "Shift+F8", go
        )
        next_incident = self._action("Next &incident", lambda: self.go_to_incident(1), "F7", go)
        previous_incident = self._action(
            "Previous i&ncident", lambda: self.go_to_incident(-1), "Shift+F7", go
        )
        copy_step = self._action("Copy step id", self.copy_step_id, None, go)
        go.addSeparator()
        self._action(
            "&Find in steps", lambda: focus_search_bar(self.step_search), "Ctrl+Shift+F", go
        )
        self._action("Next &match", lambda: self.go_to_match(1), "F3", go)
        self._action("Previous matc&h", lambda: self.go_to_match(-1), "Shift+F3", go)
        # Right-click offers what the menus offer for the thing under the mouse.
        self.runs.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.runs.table.addActions([self.compare_action, self.request_action,
                                    self.export_action, self.copy_run_action])  # fmt: skip
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.tree.addActions([copy_step, next_error, next_incident])
        self.runs.table.doubleClicked.connect(lambda _index: self._focus(self.tree))
        self.toolbar = self.addToolBar("Toolbar")
        self.toolbar.setObjectName("toolbar")
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toolbar.setMovable(False)
        for group in ((open_action, self.export_action), (self.compare_action, self.request_action),
                      (previous_error, next_error, previous_incident, next_incident)):  # fmt: skip
            for action in group:
                self.toolbar.addAction(action)
            self.toolbar.addSeparator()
        view = bar.addMenu("&View")
        self._action("&Find runs", self.focus_search, QKeySequence.StandardKey.Find, view)
        for number, (name, widget) in enumerate(
            (("runs", self.runs.table), ("steps", self.tree), ("timeline", self.timeline),
             ("details", self.detail.tabs), ("incidents", self.incidents)), start=1):  # fmt: skip
            self._action(
                f"Go to {name}", lambda _=False, w=widget: self._focus(w), f"Alt+{number}", view
            )
        self._action("&Refresh", self.reload, QKeySequence.StandardKey.Refresh, view)
        self._action("Fit &timeline", self.timeline.fit, "Ctrl+0", view)
        view.addSeparator()
        for dock in (
            self.runs_dock,
            self.detail_dock,
            self.timeline_dock,
            self.charts_dock,
            self.incidents_dock,
        ):
            view.addAction(dock.toggleViewAction())
        self._action("Reset &layout", lambda: self.restoreState(self.default_state), None, view)
        help_menu = bar.addMenu("&Help")
        self._action("&About tracedesk", self.about, None, help_menu)
        self._update_recent_menu()
        self.live_capture = install_live_capture(self)  # File → Listen for traces

    def copy_run_id(self) -> None:
        if self.current_run is not None:
            QGuiApplication.clipboard().setText(self.current_run)

    def copy_step_id(self) -> None:
        index = self.tree.currentIndex()
        if index.isValid():
            QGuiApplication.clipboard().setText(index.data(STEP_ID_ROLE))

    def go_to_error(self, direction: int) -> None:
        """The next (or previous) failed step in start order, from the current one."""
        steps = self.tree_model.steps
        current = self.tree.currentIndex()
        here = self.tree_model._node(current) if current.isValid() else -1
        order = range(here + 1, len(steps)) if direction > 0 else range(here - 1, -1, -1)
        if here < 0 and direction < 0:
            order = range(len(steps) - 1, -1, -1)
        found = next((n for n in order if steps[n].status == Status.ERROR), None)
        if found is None:
            self.statusBar().showMessage("No more failed steps in this run.", 4000)
            return
        self.select_step(steps[found].id)

    # -- search -----------------------------------------------------------------------

    def search_steps(self) -> None:
        """Find the current run's steps matching the search bar's query, in a worker;
        when the index is behind, build it first (a write job, with progress)."""
        query, run_id = self.step_search.field.text().strip(), self.current_run
        if not query or run_id is None:
            self._matches_found((run_id, set()))
            return

        build = not self.index_failed

        def read(store: Store) -> tuple[str | None, set[str] | int]:
            pending = store.search_index_state().pending if build else 0
            return run_id, pending if pending else store.matching_step_ids(run_id, query)

        self.query("step search", read, self._matches_found, self._search_failed)

    def _build_index(self, pending: int, then) -> None:
        """Build the search index (missing ``pending`` steps) in a write job with
        progress, then ``then()``."""
        if self.index_task is not None:
            return
        db = self.db_path

        def work(report, cancelled):
            with Store(db) as store:
                return store.index_steps(report, cancelled)

        def finished(_result: object) -> None:
            self.index_task = None
            self.progress.setVisible(False)
            self.status_label.setText(f"{plural(self.runs.model.rowCount(), 'run')} ·"
                                      f" {self.db_path} · search index built")  # fmt: skip
            then()

        def started() -> None:
            self.progress.setVisible(True)
            self.status_label.setText(f"Building the search index ({plural(pending, 'step')})…")

        def failed(exc: Exception) -> None:  # said once; words are then found without it
            self.index_task, self.index_failed = None, True
            self.progress.setVisible(False)
            self.message(QMessageBox.Icon.Warning, "Cannot build the search index",
                         f"{exc}\n\nWords are found without the index (slower).")  # fmt: skip
            then()

        task = Task(work)
        task.signals.progress.connect(
            lambda done, total: self.progress.setValue(done * 1000 // max(total, 1))
        )
        self.index_task = self.jobs.write("index", task, started, finished, failed)

    def _search_failed(self, exc: Exception) -> None:
        if isinstance(exc, SearchError):
            self.step_search.show_problem(str(exc))
            self.statusBar().showMessage(str(exc), 8000)
        else:
            self._read_failed(exc)

    def _matches_found(self, found: tuple[str | None, set[str] | int]) -> None:
        run_id, step_ids = found
        if run_id != self.current_run:
            return
        if isinstance(step_ids, int):  # the index is missing steps: build it, then search
            self._build_index(step_ids, self.search_steps)
            return
        self.step_search.clear_problem()
        self.match_ids = step_ids
        self._apply_matches()

    def _apply_matches(self) -> None:
        filtering = self.step_search.filtering
        self.tree_model.set_matches(self.match_ids, filtering)
        if filtering:
            self.tree.expandAll() if len(self.match_ids) <= 2000 else self.tree.expandToDepth(2)
        self.tree.viewport().update()
        rows = self.tree_model.match_order()
        self.timeline.mark_matches(rows)
        self.step_search.show_count(None, len(rows))

    def go_to_match(self, direction: int) -> None:
        """Select the next (or previous) matching step in start order (F3, Shift+F3)."""
        order = self.tree_model.match_order()
        if not order:
            self.statusBar().showMessage("No matching steps in this run.", 4000)
            return
        current = self.tree.currentIndex()
        here = self.tree_model._node(current) if current.isValid() else None
        if here is None:
            position = 0 if direction > 0 else len(order) - 1
        elif direction > 0:
            position = next((n for n, row in enumerate(order) if row > here), 0)
        else:
            position = next((n for n in range(len(order) - 1, -1, -1) if order[n] < here),
                            len(order) - 1)  # fmt: skip
        self.select_step(self.tree_model.steps[order[position]].id)
        self.step_search.show_count(position, len(order))

    def search_runs(self) -> None:
        """The runs library's step search: runs with a step matching the query."""
        query = self.runs.search.text().strip()
        if not query or not self.runs.in_steps.isChecked():
            return

        def read(store: Store) -> set[str] | int:
            pending = store.search_index_state().pending
            return pending if pending else store.find_run_ids(query)

        def found(run_ids: set[str] | int) -> None:
            if isinstance(run_ids, int):
                self._build_index(run_ids, self.search_runs)
                return
            self.runs.search.setToolTip("")
            self.runs.proxy.set_filters(run_ids=run_ids)

        def failed(exc: Exception) -> None:
            if isinstance(exc, SearchError):
                self.runs.search.setToolTip(str(exc))
                self.statusBar().showMessage(str(exc), 8000)
            else:
                self._read_failed(exc)

        self.query("runs search", read, found, failed)

    def show_session(self) -> None:
        """Open the window of the current run's session (``view_opened``)."""
        run = next((r for r in self.runs.model.rows if r.id == self.current_run), None)
        if run is None or not run.session_id:
            self.statusBar().showMessage("This run belongs to no session.", 4000)
            return
        session_id = run.session_id

        def opened(loaded: tuple) -> None:
            session, runs = loaded
            if session is None:
                return
            view = SessionView(session, runs)
            view.open_run.connect(self.go_to_run)
            self._open_view(view)

        self.query("session", lambda store: read_session(store, session_id), opened)

    def go_to_incident(self, direction: int) -> None:
        count = self.incidents_model.rowCount()
        if not count:
            self.statusBar().showMessage("This run has no incidents.", 4000)
            return
        current = self.incidents.currentIndex()
        row = (current.row() + direction) % count if current.isValid() else (
            0 if direction > 0 else count - 1)  # fmt: skip
        self.incidents.selectRow(row)

    def _build_status_bar(self) -> None:
        self.status_label = QLabel(textFormat=Qt.TextFormat.PlainText)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.progress.setRange(0, 1000)
        self.cancel_button = QPushButton("Cancel import")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_import)
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().addPermanentWidget(self.cancel_button)

    def _restore_layout(self) -> None:
        geometry = self.settings.value("geometry")
        state = self.settings.value("state")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        if isinstance(state, QByteArray):
            self.layout_restored = self.restoreState(state, LAYOUT_VERSION)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self.layout_restored:  # the first time: share the height out by proportion
            self.layout_restored = True
            height = self.height()
            self.resizeDocks([self.runs_dock, self.timeline_dock],
                             [int(height * 0.26), int(height * 0.2)], Qt.Orientation.Vertical)  # fmt: skip

    def changeEvent(self, event: QEvent) -> None:
        # The system switched between light and dark: plots follow, like the widgets do.
        if event.type() == QEvent.Type.PaletteChange:
            self.apply_palette()
        super().changeEvent(event)

    def apply_palette(self) -> None:
        palette = self.palette()
        background, text = palette.base().color(), palette.text().color()
        pg.setConfigOptions(background=background, foreground=text)
        for plot in self.findChildren(pg.PlotWidget):
            plot.setBackground(background)
            for name in ("left", "bottom"):
                plot.getAxis(name).setPen(text)
                plot.getAxis(name).setTextPen(text)
        if hasattr(self, "charts"):  # titles and value labels take the new text colour
            self.charts.text_color = text
            if self.charts.plots:
                self.charts.show_data(self.charts.data)

    def closeEvent(self, event) -> None:
        self.settings.setValue("geometry", self.saveGeometry())
        self.settings.setValue("state", self.saveState(LAYOUT_VERSION))
        self.cancel_import()
        for view in self.open_views:
            view.close()
        QThreadPool.globalInstance().waitForDone(5000)
        super().closeEvent(event)

    # -- runs -------------------------------------------------------------------------

    def query(self, kind: str, fn, on_done, on_failed=None) -> Task:
        """Run ``fn(store)`` in a worker; a newer query of the same kind drops its result."""
        return self.jobs.query(kind, self.db_path, fn, on_done, on_failed or self._read_failed)

    def _read_failed(self, exc: Exception) -> None:
        self.message(QMessageBox.Icon.Critical, "Cannot read the database", str(exc))

    def reload(self) -> Task:
        """Re-read the runs library in a worker; ``library_loaded`` says when it is shown."""
        self.library_pending = True

        def read(store: Store) -> tuple[list[Run], list[str], str | None, str | None]:
            runs = store.library()
            haystacks = [search_text(run) for run in runs]
            freeze_alive()  # long-lived: never worth a collector's pass
            return runs, haystacks, store.get_meta(PRICING_META_KEY), store.get_meta(RULES_META_KEY)

        def failed(exc: Exception) -> None:
            self.library_pending = False
            self.message(QMessageBox.Icon.Critical, "Cannot read the runs", str(exc))

        return self.query("library", read, self._library_read, failed)

    def _library_read(self, loaded: tuple[list[Run], list[str], str | None, str | None]) -> None:
        """Show the runs; when prices or rules changed since they were last analysed,
        re-analyse them in a worker, then read them again."""
        runs, haystacks, priced_with, checked_with = loaded
        if (
            self.analysis_task is None
            and runs
            and (priced_with != self.pricing.fingerprint or checked_with != self.rules.fingerprint)
        ):
            db, pricing, rules = self.db_path, self.pricing, self.rules

            def work(report, cancelled):
                with Store(db) as store:  # its own connection; the window keeps reading
                    refresh_costs(store, pricing)
                    refresh_incidents(store, rules)

            self.analysis_task = self.jobs.write(
                "analysis", Task(work), lambda: None, self._analysis_done, self._analysis_done
            )
        selected = self.runs.selected_run_ids()
        self.runs.model.load(runs, haystacks)
        count = len(runs)
        busy = (
            " · prices or loop rules changed: re-analysing the runs…" if self.analysis_task else ""
        )
        self.status_label.setText(f"{plural(count, 'run')} · {self.db_path}{busy}")
        for run_id in selected[:1]:
            self.runs.select_run(run_id)
        if self.select_first_run and self.current_run is None and runs:
            self.runs.table.selectRow(0)
        self.select_first_run = False
        self.library_pending = False
        self.library_loaded.emit()

    def _analysis_done(self, _result: object) -> None:
        self.analysis_task = None
        self.reload()
        if self.current_run is not None:
            run_id, self.current_run = self.current_run, None
            self.show_run(run_id)

    def _current_run_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        run_id = current.data(RUN_ID_ROLE) if current.isValid() else None
        if run_id is not None and run_id != self.loading_run:
            self.show_run(run_id)

    def _runs_selection_changed(self, *_: object) -> None:
        # Charts come after the run is shown, and once the selection settles.
        self.charts_stale = True
        # A dock behind another dock's tab stays "visible", with nothing of it on screen.
        if not self.charts_dock.visibleRegion().isEmpty():
            self.chart_timer.start()

    def show_run(self, run_id: str) -> None:
        """Read a run in a worker, on its own connection, and show it when it arrives; when
        another run is chosen meanwhile, the newer one wins."""

        def read(store: Store) -> tuple[str, Run | None, list[StepRow], list[Incident]]:
            rows = step_rows(store.step_index(run_id))
            freeze_alive()  # up to 100k rows, kept while the run is shown
            return run_id, store.get_run(run_id), rows, store.incidents(run_id)

        self.loading_run = run_id
        self.query("run", read, self._run_read)

    def _run_read(self, loaded: tuple[str, Run | None, list[StepRow], list[Incident]]) -> None:
        run_id, run, rows, incidents = loaded
        # The same run again (it grew while listening, or was re-analysed): keep the step.
        current = self.tree.currentIndex()
        keep = (
            current.data(STEP_ID_ROLE) if run_id == self.current_run and current.isValid() else None
        )
        self.current_run = run_id
        flagged: dict[str, str] = {}
        for incident in incidents:
            for step_id in incident.step_ids:
                if severity_rank(incident.severity) >= severity_rank(flagged.get(step_id)):
                    flagged[step_id] = incident.severity
        with collector_paused():
            self.tree_model.load(rows, flagged)
            self.timeline.load(rows)
        self._show_legend()
        self.incidents_model.load_incidents(incidents, {r.id: r.name for r in rows})
        self.incidents.resizeRowsToContents()
        self.detail.show_step(None)
        if len(rows) <= 5000:
            self.tree.expandToDepth(1)
        else:  # the roots only: expanding thousands of nested steps takes seconds
            for row in range(self.tree_model.rowCount()):
                self.tree.expand(self.tree_model.index(row, 0))
        title = run.name if run else run_id
        self.setWindowTitle(f"{shorten(title, 80)} — tracedesk")
        if run is not None:
            self.run_header.setText(run_summary(run))
        count = f" ({len(incidents)})" if incidents else ""
        self.incidents_dock.setWindowTitle(f"Incidents{count}")
        self._fit_incidents(len(incidents))
        if keep is not None:
            self.select_step(keep)
        self.match_ids = set()
        if self.step_search.field.text().strip():
            self.search_steps()

    def select_step(self, step_id: str) -> None:
        """Select a step in the tree (which updates the timeline and the details)."""
        index = self.tree_model.index_of(step_id)
        if index.isValid():
            self.tree.setCurrentIndex(index)
            self.tree.scrollTo(index)

    def _tree_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid() or self.current_run is None:
            return
        row = self.tree_model._node(current)
        self.timeline.select(row)
        run_id, step_id, pricing = self.current_run, self.tree_model.steps[row].id, self.pricing

        def read(store: Store) -> tuple[Step | None, StepCost | None]:
            # A huge input or output comes as its first screen; "Show all" reads it whole.
            step = store.step(run_id, step_id, preview=SHOWN_CHARS)
            if step is None:
                return None, None
            # From the stored parts: no catalogue to load (it takes 0.2–0.5 s).
            return step, explain_stored(step) or explain_cost(step, pricing)

        self.query("step", read, self._step_read)

    def _step_read(self, loaded: tuple[Step | None, StepCost | None]) -> None:
        step, cost = loaded
        current = self.tree.currentIndex()
        if (
            step is not None
            and step.run_id == self.current_run
            and (current.isValid() and current.data(STEP_ID_ROLE) == step.id)
        ):  # else the user has moved on
            self.detail.show_step(step, cost)

    def _read_whole_step(self, step: Step, done) -> None:
        self.query("whole step", lambda store: store.step(step.run_id, step.id), done)

    def _incident_chosen(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        step_ids = self.incidents_model.rows[current.row()].step_ids
        self.tree_model.set_highlighted(set(step_ids))
        self.tree.viewport().update()  # the other bars are dimmed
        self._show_legend()
        self.timeline.highlight(
            [self.tree_model.by_id[s] for s in step_ids if s in self.tree_model.by_id]
        )
        if step_ids:
            self.select_step(step_ids[0])

    def _charts_shown(self, visible: bool) -> None:
        """Charts need height to be read: showing them grows their dock to half the window;
        going back to the timeline gives the steps their height back."""
        if visible:
            self.charts.ensure_plots()
        if visible and self.charts_stale:
            self.chart_timer.start()
        if visible and self.isVisible():
            wanted = int(self.height() * 0.45)
            if self.charts_dock.height() < wanted:
                self.bottom_height = self.charts_dock.height()
                self.resizeDocks([self.charts_dock], [wanted], Qt.Orientation.Vertical)
        elif not visible and self.bottom_height is not None and self.timeline_dock.isVisible():
            self.resizeDocks([self.timeline_dock], [self.bottom_height], Qt.Orientation.Vertical)
            self.bottom_height = None

    def _fit_incidents(self, count: int) -> None:
        """A run without incidents leaves their dock at its smallest, for the details; the
        next run with some gets back the height it had."""
        dock, minimum = self.incidents_dock, self.incidents_dock.minimumSizeHint().height()
        if not count and dock.height() > minimum + 20:
            self.incidents_height = dock.height()
            self.resizeDocks([dock], [minimum], Qt.Orientation.Vertical)
        elif count and self.incidents_height is not None:
            self.resizeDocks([dock], [self.incidents_height], Qt.Orientation.Vertical)
            self.incidents_height = None

    def _bar_colours_changed(self, index: int) -> None:
        self.waterfall.heat = index == 1
        self._show_legend()
        self.tree.viewport().update()

    def _show_legend(self) -> None:
        model = self.tree_model
        if self.waterfall.heat:
            self.legend.show_heat(model.cost_low, model.cost_high)
        else:
            kinds = dict.fromkeys(s.kind for s in model.steps)
            self.legend.show_kinds(list(kinds), bool(model.highlighted))

    def load_charts(self, run_ids: list[str] | None = None) -> None:
        run_ids = run_ids or self.runs.selected_run_ids()
        if not run_ids:
            return
        self.charts_stale = False
        db, pricing = str(self.db_path), self.pricing
        self.jobs.read("charts", lambda: chart_data(db, run_ids, pricing), self._charts_ready,
                       lambda exc: self.charts.show_data(None))  # fmt: skip

    def _charts_ready(self, data: ChartData) -> None:
        self.charts.show_data(data)

    def compare_selected(self) -> None:
        """Compare the two selected runs (or the current one with the latest other run of
        its request)."""
        run_ids = self.runs.selected_run_ids()
        if len(run_ids) == 1:
            others = [r for r in self.request_group(run_ids[0]) if r != run_ids[0]]
            run_ids += others[-1:]
        if len(run_ids) != 2:
            self.message(QMessageBox.Icon.Information, "Compare runs",
                         "Select two runs to compare (Ctrl+click).")  # fmt: skip
            return
        self.compare_runs_by_id(*run_ids)

    def compare_runs_by_id(self, run_a: str, run_b: str) -> None:
        """Open a compare window once both runs are read and aligned (``view_opened``)."""
        self.statusBar().showMessage("Comparing the runs…", 10000)

        def opened(data: CompareData) -> None:
            self.statusBar().clearMessage()
            self._open_view(CompareView(self.db_path, data))

        self.query("compare", lambda store: read_comparison(store, run_a, run_b), opened)

    def _open_view(self, view: QWidget) -> None:
        self.open_views.append(view)
        view.show()
        self.view_opened.emit(view)

    def request_group(self, run_id: str) -> list[str]:
        """The runs of the same request as this one, oldest first."""
        rows = self.runs.model.rows
        row = next(r for r in rows if r.id == run_id)
        key = request_fingerprint(row.request, row.name)
        same = [r for r in rows if request_fingerprint(r.request, r.name) == key]
        return [r.id for r in sorted(same, key=lambda r: r.start_ns or 0)]

    def go_to_run(self, run_id: str) -> None:
        self.runs.search.clear()
        self.runs.select_run(run_id)
        self.activateWindow()
        self.raise_()

    def show_request_group(self) -> None:
        """Open the window of the runs of the current run's request (``view_opened``)."""
        if self.current_run is None:
            return
        run_ids = self.request_group(self.current_run)

        def opened(loaded: tuple) -> None:
            view = RequestGroupView(*loaded)
            view.open_run.connect(self.go_to_run)
            view.compare_runs.connect(self.compare_runs_by_id)
            self._open_view(view)

        self.query("request", lambda store: read_request_group(store, run_ids), opened)

    def _focus(self, widget: QWidget) -> None:
        dock = next((d for d in self.findChildren(QDockWidget) if d.isAncestorOf(widget)), None)
        if dock is not None:
            dock.show()
            dock.raise_()
        widget.setFocus()

    def focus_search(self) -> None:
        self.runs_dock.show()
        self.runs.search.setFocus()
        self.runs.search.selectAll()

    # -- import -----------------------------------------------------------------------

    def open_files_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Open traces", str(Path.home()),
            "Trace files (*.json *.jsonl *.ndjson *.gz);;All files (*)")  # fmt: skip
        if paths:
            self.import_files([Path(p) for p in paths])

    def import_files(self, paths: Sequence[Path], remember: bool = True) -> Task | None:
        """Import in a worker with progress, after the writes already queued. Files that
        import are remembered in File → Open recent (the demo is not). Returns the task of
        the last file."""
        if not remember:
            self.unlisted.update(Path(p) for p in paths)
        task = None
        for path in paths:
            task = self._queue_import(Path(path))
        return task

    def _queue_import(self, path: Path) -> Task:
        db, pricing, rules = self.db_path, self.pricing, self.rules

        def work(report, cancelled):
            with Store(db) as store:  # the worker's own connection
                return import_file(store, path, progress=report, cancelled=cancelled,
                                   pricing=pricing, rules=rules)  # fmt: skip

        task = Task(work)
        task.signals.progress.connect(self._import_progress)

        def started() -> None:
            self.import_task = task
            self.progress.setValue(0)
            self.progress.setVisible(True)
            self.cancel_button.setVisible(True)
            self.status_label.setText(f"Importing {path.name}…")

        return self.jobs.write("import", task, started, self._import_done, self._import_failed)

    def _import_progress(self, done: int, total: int) -> None:
        self.progress.setValue(int(1000 * done / max(total, 1)))

    def cancel_import(self) -> None:
        self.jobs.cancel("import")

    def _import_finished(self) -> None:
        self.import_task = None
        if not self.jobs.queued("import"):
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
        self.reload()

    def _import_done(self, result: ImportResult) -> None:
        self.last_import.append(result)
        if Path(result.path) not in self.unlisted:
            self._remember_recent(Path(result.path))
        self._import_finished()
        if result.already_imported:
            message = f"{Path(result.path).name}: already imported"
        else:
            message = (f"{Path(result.path).name}: {plural(result.runs, 'run')},"
                       f" {plural(result.steps, 'step')} imported"
                       + (f", {result.warning_count} warnings (File → Last import report)"
                          if result.warning_count else ""))  # fmt: skip
        self.statusBar().showMessage(message, 10000)
        self.select_first_run = True  # when the library arrives, if no run is open

    def import_report(self) -> str:
        """What the last import did, with its warnings, as plain text."""
        if not self.last_import:
            return "Nothing was imported yet in this session."
        r = self.last_import[-1]
        lines = [f"{r.path}", f"format: {r.format}",
                 f"{plural(r.runs, 'run')}, {plural(r.steps, 'step')} imported,"
                 f" {r.skipped} already present,"
                 f" {r.bad_records} bad records skipped, {r.warning_count} warnings"]  # fmt: skip
        lines += [f"  {shorten(w, 400)}" for w in r.warnings]
        if r.warning_count > len(r.warnings):
            lines.append(f"  … and {r.warning_count - len(r.warnings)} more")
        return "\n".join(lines)

    def show_import_report(self) -> None:
        self.message(QMessageBox.Icon.Information, "Last import", self.import_report())

    def _import_failed(self, exc: Exception) -> None:
        self._import_finished()
        if isinstance(exc, ImportCancelled):
            self.statusBar().showMessage("Import cancelled; the database is unchanged.", 10000)
            return
        if isinstance(exc, (TraceFormatError, OSError)):
            text = str(exc)
        else:
            text = f"Unexpected error: {exc}\n\n{getattr(exc, '__traceback_text__', '')}"
        self.message(QMessageBox.Icon.Critical, "Import failed",
                     f"{shorten(text, 2000)}\n\nThe database is unchanged.")  # fmt: skip

    def message(self, icon: QMessageBox.Icon, title: str, text: str) -> QMessageBox:
        """A message box that shows its text as plain text (file names and trace text are
        never markup), opened without blocking the window."""
        box = QMessageBox(icon, title, text, parent=self)
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.open()
        self.last_message = box
        return box

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()]
        if paths:
            self.import_files(paths)
            event.acceptProposedAction()

    def _remember_recent(self, path: Path) -> None:
        recent = [p for p in self.recent_files() if p != str(path)]
        self.settings.setValue("recent_files", [str(path), *recent][:MAX_RECENT])
        self._update_recent_menu()

    def recent_files(self) -> list[str]:
        value = self.settings.value("recent_files") or []
        return [value] if isinstance(value, str) else list(value)

    def _update_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.recent_files():
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_recent(p))
        self.recent_menu.setEnabled(bool(self.recent_files()))

    def open_recent(self, path: str) -> None:
        """Go to the runs of a file imported before; import it if this database lacks it."""
        self.query("recent", lambda store: store.run_ids_from_file(path),
                   lambda run_ids: self._go_to_runs_of(path, run_ids))  # fmt: skip

    def _go_to_runs_of(self, path: str, run_ids: list[str]) -> None:
        if not run_ids:
            self.import_files([Path(path)])
            return
        self.runs.search.clear()
        self.runs.select_runs(run_ids)
        self.statusBar().showMessage(f"{Path(path).name}: {plural(len(run_ids), 'run')}", 10000)

    # -- export -----------------------------------------------------------------------

    def export_dialog(self) -> None:
        dialog = ExportDialog(self.current_run is not None, len(self.runs.selected_run_ids()), self)
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        scope, by, fmt = dialog.choice()
        path, _ = QFileDialog.getSaveFileName(self, "Export cost summary", f"costs-by-{by}.{fmt}")
        if path:
            self.export_cost_summary(Path(path), scope, by, fmt)

    def export_cost_summary(self, path: Path, scope: str, by: str, fmt: str) -> Task:
        """Write a cost summary in a worker; the status bar says when it is written."""
        scopes: dict[str, list[str] | None] = {
            "current": [self.current_run] if self.current_run else [],
            "selected": self.runs.selected_run_ids(),
            "all": None,
        }
        run_ids, pricing = scopes[scope], self.pricing

        def write(store: Store) -> None:
            write_text_atomically(
                path, COST_WRITERS[fmt](summarize(store, pricing, run_ids, by=by))
            )

        return self._export(path, "Cost summary", write)

    def _export(self, path: Path, what: str, write) -> Task:
        def failed(exc: Exception) -> None:
            reason = exc.strerror or exc if isinstance(exc, OSError) else exc
            self.message(QMessageBox.Icon.Critical, "Export failed",
                         f"{path}: {reason}\n\nNothing was written.")  # fmt: skip

        self.statusBar().showMessage(f"Writing {path}…", 10000)
        return self.query(f"export {path}", write,
                          lambda _: self.statusBar().showMessage(f"{what} written to {path}", 10000),
                          failed)  # fmt: skip

    def export_run_dialog(self) -> None:
        run_ids = self.runs.selected_run_ids() or ([self.current_run] if self.current_run else [])
        if not run_ids:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export runs", "runs.tracedesk.jsonl")
        if path:
            self.export_runs(Path(path), run_ids)

    def export_runs(self, path: Path, run_ids: list[str]) -> Task:
        def write(store: Store) -> None:
            with atomic_output(path) as out:
                write_native(store, run_ids, out)

        return self._export(path, "Runs", write)

    def save_charts_png(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save charts", "cost-charts.png", "PNG (*.png)")
        if path:
            self.charts.ensure_plots()
            self.charts.grab().save(path)

    def about(self) -> None:
        QMessageBox.about(
            self, "About tracedesk",
            f"tracedesk {__version__}\n\nSee what LLM agents actually did: traces, cost per "
            "action, retry loops.\n\nDatabase: " + str(self.db_path),
        )  # fmt: skip
