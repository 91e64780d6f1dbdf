"""Compare two runs side by side, and look at all runs of one request."""

from __future__ import annotations

import difflib
import statistics
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QAbstractItemModel, QModelIndex, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QColor,
    QFont,
    QFontDatabase,
    QSyntaxHighlighter,
    QTextCharFormat,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QPlainTextEdit,
    QSizePolicy,
    QSplitter,
    QTableView,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from tracedesk.core.analysis.compare import (
    Comparison,
    Match,
    Pair,
    PathGroup,
    compare_runs,
    group_paths,
    subtree_totals,
)
from tracedesk.core.export import format_usd, step_label
from tracedesk.core.model import Run, Status, Step
from tracedesk.core.store import Store
from tracedesk.core.text import format_count, format_duration, plural, shorten
from tracedesk.ui.charts import UsdAxis
from tracedesk.ui.detail import pretty
from tracedesk.ui.models import (
    ROOT,
    Index,
    RowsTableModel,
    StepRow,
    cell,
    column_header,
    plain_tooltip,
    step_rows,
    time_text,
)
from tracedesk.ui.theme import error_text_color, fit_to_screen, kind_icon, plain_label
from tracedesk.ui.timeline import TimelineView
from tracedesk.ui.workers import Jobs

MATCH_COLORS = {
    Match.CHANGED: "#F2C14E",
    Match.MOVED: "#72B7B2",
    Match.ONLY_A: "#E45756",
    Match.ONLY_B: "#54A24B",
}
MATCH_TEXT = {Match.MATCHED: "", Match.CHANGED: "changed", Match.MOVED: "moved",
              Match.ONLY_A: "only in A", Match.ONLY_B: "only in B"}  # fmt: skip


MATCH_LEGEND = (
    "Match: ◆ first divergence · changed = the same step with other arguments, model or"
    " outcome · moved = found elsewhere in the other run · only in A / only in B"
)


class PairTreeModel(QAbstractItemModel):
    """One side (A or B) of an alignment. Both sides share the pair tree, so an index on
    one side has a twin with the same row and internal id on the other."""

    COLUMNS = ("Step", "Duration", "Tokens", "Cost", "Match")

    def __init__(self, comparison: Comparison, side: str, parent=None):
        super().__init__(parent)
        self.side = side
        self.comparison = comparison
        self.pairs: list[Pair] = comparison.rows()
        self.number = {id(p): i for i, p in enumerate(self.pairs)}
        self.parent_of: dict[int, int] = {}
        for i, pair in enumerate(self.pairs):
            for child in pair.children:
                self.parent_of[self.number[id(child)]] = i

    def _children(self, node: int) -> list[Pair]:
        return self.comparison.pairs if node < 0 else self.pairs[node].children

    def _node(self, index: Index) -> int:
        return index.internalId() - 1 if index.isValid() else -1

    def pair(self, index: Index) -> Pair:
        return self.pairs[self._node(index)]

    def rowCount(self, parent: Index = ROOT) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self._children(self._node(parent)))

    def columnCount(self, parent: Index = ROOT) -> int:
        return len(self.COLUMNS)

    def index(self, row: int, column: int, parent: Index = ROOT) -> QModelIndex:
        kids = self._children(self._node(parent))
        if not (0 <= row < len(kids)) or not (0 <= column < len(self.COLUMNS)):
            return QModelIndex()
        return self.createIndex(row, column, self.number[id(kids[row])] + 1)

    def parent(self, index: Index = ROOT) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        parent = self.parent_of.get(self._node(index))
        if parent is None:
            return QModelIndex()
        grand = self.parent_of.get(parent, -1)
        row = next(i for i, p in enumerate(self._children(grand)) if p is self.pairs[parent])
        return self.createIndex(row, 0, parent + 1)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        return column_header(self.COLUMNS, section, orientation, role)

    def twin(self, index: QModelIndex, other: PairTreeModel) -> QModelIndex:
        return (
            other.createIndex(index.row(), index.column(), index.internalId())
            if index.isValid()
            else index
        )

    def index_of_step(self, step_id: str) -> QModelIndex:
        for i, pair in enumerate(self.pairs):
            step = pair.a if self.side == "a" else pair.b
            if step is not None and step.id == step_id:
                parent = self.parent_of.get(i, -1)
                row = next(r for r, p in enumerate(self._children(parent)) if p is pair)
                return self.createIndex(row, 0, i + 1)
        return QModelIndex()

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        pair = self.pair(index)
        step: Step | None = pair.a if self.side == "a" else pair.b
        column = index.column()
        first = pair is self.comparison.first_divergence
        if role == Qt.ItemDataRole.DisplayRole:
            if column == 4:
                return ("◆ " if first else "") + MATCH_TEXT[pair.match]
            if step is None:
                return ""
            tokens = (step.input_tokens or 0) + (step.output_tokens or 0)
            return (cell(step_label(step)), format_duration(step.duration_ns),
                    format_count(tokens) if tokens else "", format_usd(step.cost) if step.cost else "",
                    "")[column]  # fmt: skip
        if role == Qt.ItemDataRole.DecorationRole and column == 0 and step is not None:
            return kind_icon(step.kind)
        if role == Qt.ItemDataRole.BackgroundRole and pair.match in MATCH_COLORS:
            color = QColor(MATCH_COLORS[pair.match])
            color.setAlpha(70)
            return color
        if (
            role == Qt.ItemDataRole.ForegroundRole
            and step is not None
            and step.status == Status.ERROR
        ):
            return error_text_color()
        if role == Qt.ItemDataRole.FontRole and first:
            font = QFont()
            font.setBold(True)
            return font
        return None


@dataclass(frozen=True, slots=True)
class CompareData:
    """What a compare window shows first, read in a worker."""

    comparison: Comparison
    rows: dict[str, list[StepRow]]  # the timeline rows of each side
    outputs_diff: str


def read_comparison(store: Store, run_a: str, run_b: str) -> CompareData:
    c = compare_runs(store, run_a, run_b)
    rows = {
        side: step_rows(store.step_index(run.id)) for side, run in (("a", c.run_a), ("b", c.run_b))
    }
    return CompareData(c, rows, outputs_diff(store, c))


class CompareView(QWidget):
    """Two trees and two timelines side by side, kept in step through the alignment. The
    diff of the chosen pair is read in a worker."""

    def __init__(self, db_path: Path, data: CompareData, parent=None):
        super().__init__(parent)
        self.db_path = db_path
        self.jobs = Jobs(self)
        self.comparison = c = data.comparison
        self.setWindowTitle(
            f"Compare: {shorten(c.run_a.name, 60)} vs {shorten(c.run_b.name, 60)} — tracedesk"
        )
        self.summary = plain_label(summary_text(c) + "\n" + MATCH_LEGEND)
        # One line per line, never wrapped: a wrapped label asks for the height it would
        # need at its minimum width, and the trees lose half the window to it.
        self.summary.setWordWrap(False)
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.summary.setToolTip(plain_tooltip(self.summary.text()))
        self.models = {side: PairTreeModel(c, side, self) for side in ("a", "b")}
        self.trees: dict[str, QTreeView] = {}
        self.timelines: dict[str, TimelineView] = {}
        self.rows: dict[str, dict[str, int]] = {}
        trees, timelines = QSplitter(), QSplitter()
        for side, run in (("a", c.run_a), ("b", c.run_b)):
            tree = QTreeView()
            tree.setModel(self.models[side])
            tree.setUniformRowHeights(True)
            tree.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
            tree.header().setStretchLastSection(False)
            tree.setHeaderHidden(False)
            box = QWidget()
            layout = QVBoxLayout(box)
            layout.setContentsMargins(0, 0, 0, 0)
            title = plain_label(
                f"{side.upper()}: {shorten(run.name, 120)}  [{shorten(run.id, 60)}]"
            )
            title.setWordWrap(False)
            title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
            layout.addWidget(title)
            layout.addWidget(tree)
            trees.addWidget(box)
            self.trees[side] = tree
            timeline = TimelineView()
            rows = data.rows[side]
            timeline.load(rows)
            self.rows[side] = {r.id: i for i, r in enumerate(rows)}
            timeline.step_clicked.connect(lambda step_id, s=side: self.select_step(s, step_id))
            timelines.addWidget(timeline)
            self.timelines[side] = timeline
        self.diff = QPlainTextEdit(readOnly=True)
        self.diff.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.diff_colours = DiffHighlighter(self.diff.document())
        splitter = QSplitter(Qt.Orientation.Vertical)
        for widget in (trees, timelines, self.diff):
            splitter.addWidget(widget)
        splitter.setSizes([420, 200, 200])
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(splitter)
        self._syncing = False
        for side, other in (("a", "b"), ("b", "a")):
            tree = self.trees[side]
            tree.selectionModel().currentChanged.connect(
                lambda current, _prev, s=side, o=other: self._current_changed(s, o, current))  # fmt: skip
            tree.expanded.connect(lambda index, s=side, o=other: self._mirror(s, o, index, True))
            tree.collapsed.connect(lambda index, s=side, o=other: self._mirror(s, o, index, False))
            tree.verticalScrollBar().valueChanged.connect(
                lambda value, o=other: self._scroll(o, value))  # fmt: skip
        for tree in self.trees.values():
            tree.expandAll()
            tree.setColumnWidth(1, 70)
            tree.setColumnWidth(2, 60)
            tree.setColumnWidth(3, 80)
            tree.setColumnWidth(4, 150)
        self.diff.setPlainText(data.outputs_diff)
        if c.first_divergence is not None:
            side, step = next((side, s) for side, s in
                              (("a", c.first_divergence.a), ("b", c.first_divergence.b)) if s)  # fmt: skip
            self.trees[side].setCurrentIndex(self.models[side].index_of_step(step.id))
        fit_to_screen(self, 1500, 950)

    def select_step(self, side: str, step_id: str) -> None:
        index = self.models[side].index_of_step(step_id)
        if index.isValid():
            self.trees[side].setCurrentIndex(index)

    def _current_changed(self, side: str, other: str, current: QModelIndex) -> None:
        if self._syncing or not current.isValid():
            return
        self._syncing = True
        try:
            twin = self.models[side].twin(current, self.models[other])
            self.trees[other].setCurrentIndex(twin)
            self.trees[other].scrollTo(twin)
            pair = self.models[side].pair(current)
            for s, step in (("a", pair.a), ("b", pair.b)):
                self.timelines[s].select(self.rows[s].get(step.id) if step else None)
            c = self.comparison
            self.jobs.query("diff", self.db_path, lambda store: pair_diff(store, c, pair),
                            self.diff.setPlainText, lambda exc: self.diff.setPlainText(str(exc)))  # fmt: skip
        finally:
            self._syncing = False

    def _mirror(self, side: str, other: str, index: QModelIndex, expand: bool) -> None:
        twin = self.models[side].twin(index, self.models[other])
        self.trees[other].setExpanded(twin, expand)

    def _scroll(self, other: str, value: int) -> None:
        if not self._syncing:
            self._syncing = True
            self.trees[other].verticalScrollBar().setValue(value)
            self._syncing = False


class DiffHighlighter(QSyntaxHighlighter):
    """Colours a unified diff by line: what only A had, what only B has, and the hunks.
    The text stays plain; only its background changes."""

    def __init__(self, document) -> None:
        super().__init__(document)
        self.formats = {}
        for prefix, colour in (("-", MATCH_COLORS[Match.ONLY_A]), ("+", MATCH_COLORS[Match.ONLY_B]),
                               ("@", "#9e9e9e")):  # fmt: skip
            text_format = QTextCharFormat()
            background = QColor(colour)
            background.setAlpha(70)
            text_format.setBackground(background)
            self.formats[prefix] = text_format

    def highlightBlock(self, text: str) -> None:
        text_format = self.formats.get(text[:1])
        if text_format is not None and not text.startswith(("--- ", "+++ ")):
            self.setFormat(0, len(text), text_format)


def summary_text(c: Comparison) -> str:
    a, b = c.totals_a, c.totals_b
    cost_delta = b.cost - a.cost
    parts = [
        f"cost {format_usd(a.cost)} vs {format_usd(b.cost)} ({'+' if cost_delta >= 0 else '-'}{format_usd(abs(cost_delta))})",
        f"tokens {format_count(a.tokens)} vs {format_count(b.tokens)} ({b.tokens - a.tokens:+,})",
        f"steps {a.steps} vs {b.steps} ({b.steps - a.steps:+})",
        f"duration {format_duration(a.duration_ns)} vs {format_duration(b.duration_ns)}",
        f"incidents {a.incidents} vs {b.incidents}",
    ]
    counts = c.counts()
    alignment = ", ".join(
        f"{v} {MATCH_TEXT[Match(k)] or 'matched'}" for k, v in counts.items() if v
    )
    first = c.first_divergence
    if first is None:
        where = "the runs took the same path"
    elif first.a is None or first.b is None:
        side, step = ("B", first.b) if first.a is None else ("A", first.a)
        where = f"first divergence: only in {side}, {step_label(step)}"
    else:
        where = f"first divergence: A {step_label(first.a)} | B {step_label(first.b)}"
    return "A vs B — " + " · ".join(parts) + f"\n{alignment}. {where}"


def _text_diff(a_text: str, b_text: str, title: str) -> list[str]:
    lines = list(
        difflib.unified_diff(
            a_text.splitlines(), b_text.splitlines(), f"A {title}", f"B {title}", lineterm=""
        )
    )
    return lines or [f"{title}: the same"]


def outputs_diff(store: Store, c: Comparison) -> str:
    """The diff of the two runs' final outputs (their first root step's output)."""

    def final(run: Run, side: str) -> str:
        root = next((getattr(p, side) for p in c.pairs if getattr(p, side) is not None), None)
        full = store.step(run.id, root.id) if root else None
        return pretty(full.output) if full else ""

    return "\n".join(_text_diff(final(c.run_a, "a"), final(c.run_b, "b"), "final output"))


def pair_diff(store: Store, c: Comparison, pair: Pair) -> str:
    a = store.step(c.run_a.id, pair.a.id) if pair.a else None
    b = store.step(c.run_b.id, pair.b.id) if pair.b else None
    lines: list[str] = []
    if pair.children:
        a_sum, b_sum = subtree_totals(pair, "a"), subtree_totals(pair, "b")
        lines += [f"subtree: A {a_sum.steps} steps, {format_count(a_sum.tokens)} tokens, {format_usd(a_sum.cost)}"
                  f" · B {b_sum.steps} steps, {format_count(b_sum.tokens)} tokens, {format_usd(b_sum.cost)}", ""]  # fmt: skip
    for title, getter in (("input", lambda s: s.input), ("output", lambda s: s.output),
                          ("tool arguments", lambda s: s.tool_args), ("error", lambda s: s.error)):  # fmt: skip
        lines += _text_diff(pretty(getter(a)) if a else "", pretty(getter(b)) if b else "", title)
        lines.append("")
    return "\n".join(lines)


class GroupRunsModel(RowsTableModel):
    """The runs of one request with the path each took."""

    COLUMNS = ("Run", "Started", "Path", "Steps", "Cost", "Duration", "Incidents")

    def __init__(self, runs: list[Run], path_of: dict[str, int], parent=None):
        super().__init__(parent, runs)
        self.path_of = path_of

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or role != Qt.ItemDataRole.DisplayRole:
            return None
        run = self.rows[index.row()]
        return (cell(run.name or run.id), time_text(run.start_ns), f"path {self.path_of[run.id] + 1}",
                str(run.step_count), format_usd(run.cost), format_duration(run.duration_ns),
                str(run.incident_count))[index.column()]  # fmt: skip


PATH_COLOURS = (("#4C78A8", "blue"), ("#F58518", "orange"), ("#54A24B", "green"),
                ("#E45756", "red"), ("#B279A2", "purple"), ("#72B7B2", "teal"),
                ("#9D755D", "brown"))  # fmt: skip


class RequestGroupView(QWidget):
    """All runs of one request: the spread of cost, steps and duration, and their paths.
    A double-click opens a run in the main window; the context menu compares two."""

    open_run = Signal(str)
    compare_runs = Signal(str, str)

    def __init__(self, runs: list[Run], groups: list[PathGroup], parent=None):
        super().__init__(parent)
        self.groups = groups
        path_of = {run_id: i for i, g in enumerate(self.groups) for run_id in g.run_ids}
        request = runs[0].request if runs else ""
        self.setWindowTitle("Runs of one request — tracedesk")
        costs = [float(r.cost or 0) for r in runs]
        header = plain_label()
        header.setText(
            f"{len(runs)} runs of: {request}\n" + spread_text(runs) +
            f"\n{len(self.groups)} paths; the most common was taken by {len(self.groups[0].run_ids) if self.groups else 0} runs."
        )  # fmt: skip
        self.table = QTableView()
        self.model = GroupRunsModel(runs, path_of, self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(0, 200)
        self.table.setColumnWidth(1, 150)
        self.table.doubleClicked.connect(lambda index: self.open_run.emit(self.run_at(index.row())))
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        open_action = QAction("Open run", self.table)
        open_action.triggered.connect(self._open_current)
        compare_action = QAction("Compare the two selected runs", self.table)
        compare_action.triggered.connect(self._compare_selected)
        self.table.addActions([open_action, compare_action])
        paths = QPlainTextEdit(readOnly=True)
        paths.setPlainText("\n".join(
            f"path {i + 1} ({PATH_COLOURS[i % len(PATH_COLOURS)][1]}): {plural(len(g.run_ids), 'run')} — "
            + " → ".join(g.example) for i, g in enumerate(self.groups)))  # fmt: skip
        self.chart = pg.PlotWidget(title="Cost per run, coloured by path (see the paths below)",
                                   axisItems={"left": UsdAxis("left")})  # fmt: skip
        self.chart.addItem(pg.BarGraphItem(
            x=list(range(len(runs))), height=costs, width=0.7,
            brushes=[PATH_COLOURS[path_of[r.id] % len(PATH_COLOURS)][0] for r in runs]))  # fmt: skip
        self.chart.setLabel("bottom", "run (oldest first)")
        self.chart.getAxis("bottom").setTicks([[(i, str(i + 1)) for i in range(len(runs))]])
        splitter = QSplitter(Qt.Orientation.Vertical)
        for widget in (self.table, self.chart, paths):
            splitter.addWidget(widget)
        layout = QVBoxLayout(self)
        layout.addWidget(header)
        layout.addWidget(splitter)
        fit_to_screen(self, 1100, 800)

    def run_at(self, row: int) -> str:
        return self.model.rows[row].id

    def _open_current(self) -> None:
        if self.table.currentIndex().isValid():
            self.open_run.emit(self.run_at(self.table.currentIndex().row()))

    def _compare_selected(self) -> None:
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows())
        if len(rows) == 2:
            self.compare_runs.emit(self.run_at(rows[0]), self.run_at(rows[1]))


def read_request_group(store: Store, run_ids: list[str]) -> tuple[list[Run], list[PathGroup]]:
    """The runs, oldest first, and the paths they took."""
    runs = sorted((store.find_run(r) for r in run_ids), key=lambda r: r.start_ns or 0)
    return runs, group_paths((r, store.steps(r.id, payloads=False)) for r in runs)


def spread_text(runs: list[Run]) -> str:
    if not runs:
        return ""

    def spread(values: list[float], fmt) -> str:
        return f"min {fmt(min(values))}, median {fmt(statistics.median(values))}, max {fmt(max(values))}"

    return "\n".join([
        "cost: " + spread([float(r.cost or 0) for r in runs], lambda v: format_usd(Decimal(str(round(v, 8))))),
        "steps: " + spread([r.step_count for r in runs], lambda v: f"{v:g}"),
        "duration: " + spread([r.duration_ns or 0 for r in runs], lambda v: format_duration(int(v))),
    ])  # fmt: skip
