"""Qt item models: thin adapters over store queries, for the runs library, the step tree,
the incidents list and collapsible JSON payloads."""

from __future__ import annotations

import datetime
import html
from collections import Counter
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractItemModel,
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor, QFont

from tracedesk.core.export import cost_text, format_usd, incident_lines
from tracedesk.core.model import Incident, Run, Status, from_pusd, severity_rank
from tracedesk.core.text import format_count, format_duration, incidents_text, shorten, visible
from tracedesk.ui.theme import (
    INCIDENT_COLOR,
    MATCH_COLOR,
    SEVERITY_COLORS,
    error_text_color,
    kind_icon,
)

Index = QModelIndex | QPersistentModelIndex
DISPLAY = Qt.ItemDataRole.DisplayRole
RUN_ID_ROLE = Qt.ItemDataRole.UserRole + 2
STEP_ID_ROLE = Qt.ItemDataRole.UserRole + 3
MATCH_ROLE = Qt.ItemDataRole.UserRole + 4  # the step search found this step
SEARCH_ROLE = Qt.ItemDataRole.UserRole + 4  # text the search box matches
ROOT = QModelIndex()  # the invisible root, as a default argument


TOOLTIP_CHARS = 4000  # a tooltip lays out all of its text: keep it small
CELL_CHARS = 300  # likewise a table cell


def plain_tooltip(text: str) -> str:
    """Trace text as a tooltip that Qt shows as text, never as markup it would render, with
    controls and bidi overrides spelled out and its length bounded."""
    if len(text) > TOOLTIP_CHARS:
        text = text[:TOOLTIP_CHARS] + f"… ({len(text) - TOOLTIP_CHARS:,} more characters)"
    return f"<p style='white-space:pre-wrap'>{html.escape(visible(text))}</p>"


def cell(text: str | None) -> str:
    """Trace text for one line of a table or tree: bounded, controls made visible."""
    return shorten(text, CELL_CHARS)


class RowsTableModel(QAbstractTableModel):
    """A table over a list of rows; subclasses name the COLUMNS and answer ``data``."""

    COLUMNS: tuple[str, ...] = ()

    def __init__(self, parent=None, rows: list[Any] | None = None):
        super().__init__(parent)
        self.rows: list[Any] = rows or []

    def load(self, rows: list[Any]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def rowCount(self, parent: Index = ROOT) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = ROOT) -> int:
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = DISPLAY) -> Any:
        return column_header(self.COLUMNS, section, orientation, role)


def column_header(
    columns: tuple[str, ...], section: int, orientation: Qt.Orientation, role: int
) -> Any:
    if orientation == Qt.Orientation.Horizontal and role == DISPLAY:
        return columns[section]
    return None


class RunsTableModel(RowsTableModel):
    """Adapts ``Store.library()``: one row per run."""

    COLUMNS = ("Name", "Request", "Models", "Steps", "Tokens", "Cost", "Duration", "Status",
               "Incidents", "Started")  # fmt: skip

    rows: list[Run]
    # Sort keys by column: one call per run when sorting, not two per comparison.
    SORT_KEYS = (
        lambda r: (r.name or "").lower(), lambda r: (r.request or "").lower(),
        lambda r: ", ".join(r.models), lambda r: r.step_count,
        lambda r: r.input_tokens + r.output_tokens, lambda r: r.cost or 0,
        lambda r: r.duration_ns or 0, lambda r: r.status,
        lambda r: (severity_rank(r.worst_severity) + 1) * 1000 + r.incident_count,
        lambda r: r.start_ns or 0,
    )  # fmt: skip

    def __init__(self, parent=None):
        super().__init__(parent)
        self.haystacks: list[str] = []  # what the search looks in, per row, lower case
        self.order: tuple[int, Qt.SortOrder] | None = None  # the last sort, kept on reload

    def load(self, rows: list[Run], haystacks: list[str] | None = None) -> None:
        """``haystacks``: each run's ``search_text``, when the worker that read the runs
        made them already."""
        if haystacks is None:
            haystacks = [search_text(run) for run in rows]
        if self.order is not None:
            column, order = self.order
            order_of = _order(rows, self.SORT_KEYS[column], order == Qt.SortOrder.DescendingOrder)
            rows, haystacks = [rows[i] for i in order_of], [haystacks[i] for i in order_of]
        self.haystacks = haystacks
        super().load(rows)

    def run_id(self, row: int) -> str:
        return self.rows[row].id

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sorted here, with one key per run (the proxy keeps this order): a proxy sort of
        20k runs asked for 600k values through ``data``."""
        if not 0 <= column < len(self.SORT_KEYS) or self.order == (column, order):
            return  # Qt asks twice for one header click; sorted is sorted
        self.order = (column, order)
        self.reorder(self.SORT_KEYS[column], order == Qt.SortOrder.DescendingOrder)

    def group_by_request(self) -> None:
        """Runs of one request together, oldest first, in one pass (shown as sorted by
        request)."""
        self.order = (1, Qt.SortOrder.AscendingOrder)
        self.reorder(lambda r: ((r.request or "").lower(), r.start_ns or 0), False)

    def reorder(self, key, reverse: bool) -> None:
        """Sort the rows by ``key``; selections and other persistent indexes follow."""
        self.layoutAboutToBeChanged.emit()
        order_of = _order(self.rows, key, reverse)
        new_row = {old: new for new, old in enumerate(order_of)}
        self.rows = [self.rows[i] for i in order_of]
        self.haystacks = [self.haystacks[i] for i in order_of]
        old = self.persistentIndexList()
        self.changePersistentIndexList(old, [self.index(new_row[i.row()], i.column()) for i in old])
        self.layoutChanged.emit()

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        if not index.isValid():
            return None
        run, column = self.rows[index.row()], index.column()
        if role == RUN_ID_ROLE:
            return run.id
        if role == SEARCH_ROLE:
            return self.haystacks[index.row()]
        tokens = run.input_tokens + run.output_tokens
        if role == DISPLAY or role == Qt.ItemDataRole.ToolTipRole:
            values = (
                cell(run.name or run.id), cell(run.request),
                cell(", ".join(run.models)), str(run.step_count),
                format_count(tokens), cost_text(run.cost, run.unpriced_steps),
                format_duration(run.duration_ns), run.status,
                incidents_text(run.incident_count, run.worst_severity),
                time_text(run.start_ns),
            )  # fmt: skip
            if role == Qt.ItemDataRole.ToolTipRole:
                full = {0: f"{run.name}\n{run.id}", 1: run.request or ""}.get(column)
                return None if full is None else plain_tooltip(full)
            return values[column]
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == 7 and run.status == Status.ERROR:
                return error_text_color()
            if column == 8 and run.worst_severity:
                return QColor(SEVERITY_COLORS[run.worst_severity])
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (3, 4, 5, 6):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def _order(rows: list[Run], key, reverse: bool) -> list[int]:
    """The rows' positions in sorted order (stable): one key call per row."""
    keys = list(map(key, rows))
    return sorted(range(len(keys)), key=keys.__getitem__, reverse=reverse)


def search_text(run: Run) -> str:
    return " ".join([run.name, run.request or "", *run.models, *run.tools, run.id]).lower()


def time_text(ns: int | None) -> str:
    if ns is None:
        return ""
    return datetime.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


class RunsFilterProxy(QSortFilterProxyModel):
    """Search (name, request, model, tool), status, has-incidents and since filters."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.text = ""
        self.status = ""
        self.incidents_only = False
        self.since_ns = 0
        self.run_ids: set[str] | None = None  # runs with steps the search language found

    def set_filters(self, text: str | None = None, status: str | None = None,
                    incidents_only: bool | None = None, since_ns: int | None = None,
                    run_ids: set[str] | bool | None = False) -> None:  # fmt: skip
        changing = hasattr(self, "beginFilterChange")  # Qt >= 6.10; invalidateFilter before
        if changing:
            self.beginFilterChange()
        if text is not None:
            self.text = text.lower().strip()
        if status is not None:
            self.status = status
        if incidents_only is not None:
            self.incidents_only = incidents_only
        if since_ns is not None:
            self.since_ns = since_ns
        if run_ids is not False:  # None: no step search
            self.run_ids = run_ids  # type: ignore[assignment]
        if changing:
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model: RunsTableModel = self.sourceModel()  # type: ignore[assignment]
        run = model.rows[source_row]
        if self.status and run.status != self.status:
            return False
        if self.incidents_only and not run.incident_count:
            return False
        if self.since_ns and (run.start_ns or 0) < self.since_ns:
            return False
        if self.run_ids is not None:
            return run.id in self.run_ids
        if self.text:
            haystack = model.haystacks[source_row]
            return all(word in haystack for word in self.text.split())
        return True

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        self.sourceModel().sort(column, order)  # the proxy itself keeps the source's order


@dataclass(slots=True)
class StepRow:
    """One step as the tree and timeline see it (no payloads)."""

    id: str
    parent: int  # index of the parent row, -1 for a root
    depth: int
    kind: str
    name: str
    start_ns: int | None
    end_ns: int | None
    status: str
    input_tokens: int
    output_tokens: int
    cost_pusd: int | None  # pico-dollars, as stored; made USD only when shown
    model: str | None
    tool_name: str | None


def duration_of(step: StepRow) -> int | None:
    return None if step.start_ns is None or step.end_ns is None else step.end_ns - step.start_ns


def step_rows(index_rows: list[tuple]) -> list[StepRow]:
    """``Store.step_index`` rows as StepRows with parent links resolved to row numbers."""
    position = {row[0]: i for i, row in enumerate(index_rows)}
    return [
        StepRow(r[0], -1 if r[1] is None else position.get(r[1], -1), *r[2:]) for r in index_rows
    ]


class StepTreeModel(QAbstractItemModel):
    """Adapts a run's ``step_index`` as a tree; children are fetched in chunks, so a run
    with 100k steps under one parent opens at once."""

    COLUMNS = ("Step", "Kind", "Duration", "Tokens", "Cost", "Loop", "Waterfall")
    WATERFALL = 6  # drawn by ui.waterfall.WaterfallDelegate
    CHUNK = 500

    def __init__(self, parent=None):
        super().__init__(parent)
        self.steps: list[StepRow] = []
        self.child_rows: dict[int, list[int]] = {}  # parent row (-1 = roots) -> child rows
        self.row_in_parent: list[int] = []
        self.loaded: dict[int, int] = {}
        self.by_id: dict[str, int] = {}
        self.flagged: dict[str, str] = {}  # step id -> worst incident severity
        self.highlighted: set[str] = set()
        self.matched: set[str] = set()  # found by the search bar
        self.kept: set[int] | None = None  # the rows a filtering search shows
        self.origin_ns, self.span_ns = 0, 0  # the run's first start and its length
        self.cost_low, self.cost_high = 0, 0  # the cheapest and dearest priced step

    def load(self, steps: list[StepRow], flagged: dict[str, str] | None = None) -> None:
        self.beginResetModel()
        self.steps = steps
        self.matched = set()
        self.kept = None
        self._link()
        self.by_id = {s.id: i for i, s in enumerate(steps)}
        self.flagged = flagged or {}
        self.highlighted = set()
        starts = [s.start_ns for s in steps if s.start_ns is not None]
        ends = [s.end_ns for s in steps if s.end_ns is not None]
        self.origin_ns = min(starts, default=0)
        self.span_ns = max(max(ends, default=0), max(starts, default=0)) - self.origin_ns
        costs = [s.cost_pusd for s in steps if s.cost_pusd and s.cost_pusd > 0]
        self.cost_low, self.cost_high = min(costs, default=0), max(costs, default=0)
        self.endResetModel()

    def _link(self) -> None:
        """Children by parent, of every step or of the kept ones only (a filter)."""
        self.child_rows = {-1: []}
        self.row_in_parent = [0] * len(self.steps)
        for i, step in enumerate(self.steps):
            if self.kept is not None and i not in self.kept:
                continue
            siblings = self.child_rows.setdefault(step.parent, [])
            self.row_in_parent[i] = len(siblings)
            siblings.append(i)
        self.loaded = {}

    def set_matches(self, step_ids: set[str], filtering: bool) -> None:
        """Mark the steps a search found; when filtering, show only them and their
        ancestors (an empty search shows every step)."""
        self.matched = step_ids
        kept: set[int] | None = None
        if filtering and step_ids:
            kept = set()
            for step_id in step_ids:
                node = self.by_id.get(step_id, -1)
                while node >= 0 and node not in kept:
                    kept.add(node)
                    node = self.steps[node].parent
        if kept != self.kept:
            self.beginResetModel()
            self.kept = kept
            self._link()
            self.endResetModel()
        elif self.steps:
            self.dataChanged.emit(self.index(0, 0), self.index(self.rowCount() - 1,
                                  len(self.COLUMNS) - 1), [Qt.ItemDataRole.BackgroundRole])  # fmt: skip

    def match_order(self) -> list[int]:
        """The matched steps' rows, in start order (the order of ``steps``)."""
        return sorted(self.by_id[s] for s in self.matched if s in self.by_id)

    def _node(self, index: Index) -> int:
        return index.internalId() - 1 if index.isValid() else -1

    def _loaded(self, node: int) -> int:
        return self.loaded.get(node, min(self.CHUNK, len(self.child_rows.get(node, ()))))

    def rowCount(self, parent: Index = ROOT) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        return self._loaded(self._node(parent))

    def columnCount(self, parent: Index = ROOT) -> int:
        return len(self.COLUMNS)

    def hasChildren(self, parent: Index = ROOT) -> bool:
        if parent.isValid() and parent.column() != 0:
            return False
        return bool(self.child_rows.get(self._node(parent)))

    def canFetchMore(self, parent: Index) -> bool:
        node = self._node(parent)
        return self._loaded(node) < len(self.child_rows.get(node, ()))

    def fetchMore(self, parent: Index) -> None:
        self._load_to(parent, self._loaded(self._node(parent)) + self.CHUNK)

    def _load_to(self, parent: Index, rows: int) -> None:
        """Make at least ``rows`` children of ``parent`` (or all it has) known to views."""
        node = self._node(parent)
        have, total = self._loaded(node), len(self.child_rows.get(node, ()))
        more = min(total, rows)
        if more > have:
            self.beginInsertRows(parent, have, more - 1)
            self.loaded[node] = more
            self.endInsertRows()

    def index(self, row: int, column: int, parent: Index = ROOT) -> QModelIndex:
        node = self._node(parent)
        if row < 0 or column < 0 or column >= len(self.COLUMNS) or row >= self._loaded(node):
            return QModelIndex()
        return self.createIndex(row, column, self.child_rows[node][row] + 1)

    def parent(self, index: Index = ROOT) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        parent = self.steps[self._node(index)].parent
        if parent < 0:
            return QModelIndex()
        return self.createIndex(self.row_in_parent[parent], 0, parent + 1)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = DISPLAY) -> Any:
        return column_header(self.COLUMNS, section, orientation, role)

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        if not index.isValid():
            return None
        step, column = self.steps[self._node(index)], index.column()
        if role == DISPLAY:
            tokens = step.input_tokens + step.output_tokens
            return (
                cell(step.name or step.id), step.kind, format_duration(duration_of(step)),
                format_count(tokens) if tokens else "", format_usd(from_pusd(step.cost_pusd)) if step.cost_pusd else "",
                "⟳ " + self.flagged[step.id] if step.id in self.flagged else "", "",
            )[column]  # fmt: skip
        if role == STEP_ID_ROLE:
            return step.id
        if role == Qt.ItemDataRole.DecorationRole and column == 0:
            return kind_icon(step.kind)
        if role == Qt.ItemDataRole.ForegroundRole:
            if step.status == Status.ERROR:
                return error_text_color()
            if column == 5 and step.id in self.flagged:
                return QColor(SEVERITY_COLORS[self.flagged[step.id]])
        if role == Qt.ItemDataRole.BackgroundRole and step.id in self.matched:
            color = QColor(MATCH_COLOR)
            color.setAlpha(110)
            return color
        if role == MATCH_ROLE:
            return step.id in self.matched
        if role == Qt.ItemDataRole.BackgroundRole and step.id in self.highlighted:
            color = QColor(INCIDENT_COLOR)
            color.setAlpha(70)
            return color
        if role == Qt.ItemDataRole.FontRole and step.status == Status.ERROR and column == 0:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            detail = step.model or step.tool_name or ""
            text = f"{step.name}\n{step.kind} {detail}".strip()
            if column == self.WATERFALL and step.start_ns is not None:
                text += (f"\nstarted at {format_duration(step.start_ns - self.origin_ns)},"
                         f" ran {format_duration(duration_of(step))}")  # fmt: skip
            return plain_tooltip(text)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (2, 3, 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def index_of(self, step_id: str) -> QModelIndex:
        """The index of a step, fetching rows down to it first."""
        if step_id not in self.by_id or (self.kept is not None
                                         and self.by_id[step_id] not in self.kept):  # fmt: skip
            return QModelIndex()
        chain, node = [], self.by_id[step_id]
        while node >= 0:
            chain.append(node)
            node = self.steps[node].parent
        parent = QModelIndex()
        for node in reversed(chain):
            row = self.row_in_parent[node]
            self._load_to(parent, row + 1)  # one insert up to the row, not a chunk at a time
            parent = self.index(row, 0, parent)
        return parent

    def set_highlighted(self, step_ids: set[str]) -> None:
        changed = self.highlighted ^ step_ids
        self.highlighted = step_ids
        for step_id in changed:
            index = self._loaded_index(self.by_id.get(step_id, -1))
            if index.isValid():
                last = index.siblingAtColumn(len(self.COLUMNS) - 1)
                self.dataChanged.emit(index, last, [Qt.ItemDataRole.BackgroundRole])

    def _loaded_index(self, node: int) -> QModelIndex:
        """The index of a step if its row and its ancestors' rows are loaded, else invalid."""
        if node < 0 or (self.kept is not None and node not in self.kept):
            return QModelIndex()
        parent = self.steps[node].parent
        if parent >= 0 and not self._loaded_index(parent).isValid():
            return QModelIndex()
        row = self.row_in_parent[node]
        if row >= self._loaded(parent):
            return QModelIndex()
        return self.createIndex(row, 0, node + 1)


class IncidentsModel(RowsTableModel):
    """Adapts ``Store.incidents(run_id)``; ``names`` maps step ids to what the tree shows."""

    COLUMNS = ("Severity", "What happened", "Steps", "Wasted", "Evidence")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.names: dict[str, str] = {}

    def steps_text(self, incident: Incident) -> str:
        """The steps involved, by name and count: "4× fetch_logs, 4× chat gpt-4o"."""
        counts = Counter(self.names.get(s, s) for s in incident.step_ids)
        return ", ".join(f"{n}× {name}" if n > 1 else name for name, n in counts.most_common())

    def load_incidents(self, incidents: list[Incident], names: dict[str, str]) -> None:
        self.names = names
        self.load(incidents)

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        if not index.isValid():
            return None
        incident: Incident = self.rows[index.row()]
        column = index.column()
        if role == DISPLAY:
            return (
                incident.severity,
                cell(f"{incident.kind.replace('_', ' ')}: {incident.message}"),
                cell(self.steps_text(incident)),
                f"{cost_text(incident.wasted_cost, incident.wasted_unpriced)}"
                f" · {format_count(incident.wasted_tokens)} tok"
                f" · {format_duration(incident.wasted_ns)}",
                "; ".join(e.kind.replace("_", " ") for e in incident.evidence),
            )[column]
        if role == Qt.ItemDataRole.ToolTipRole:
            return plain_tooltip("\n".join(incident_lines(incident, self.names)))
        if role == Qt.ItemDataRole.ForegroundRole and column == 0:
            return QColor(SEVERITY_COLORS.get(incident.severity, "#888888"))
        return None


class JsonModel(QAbstractItemModel):
    """A JSON value as a collapsible tree; nodes are built when first asked for."""

    COLUMNS = ("Key", "Value")

    def __init__(self, value: Any = None, parent=None):
        super().__init__(parent)
        self.nodes: list[tuple[int, str, Any]] = []  # (parent node, key, value)
        self.kids: dict[int, list[int]] = {}
        self.set_value(value)

    def set_value(self, value: Any) -> None:
        self.beginResetModel()
        self.nodes = [(-1, "", value)]
        self.kids = {}
        self.endResetModel()

    def _children(self, node: int) -> list[int]:
        if node not in self.kids:
            value = self.nodes[node][2]
            items = (
                value.items()
                if isinstance(value, dict)
                else enumerate(value)
                if isinstance(value, list)
                else ()
            )
            ids = []
            for key, child in items:
                ids.append(len(self.nodes))
                self.nodes.append((node, str(key), child))
            self.kids[node] = ids
        return self.kids[node]

    def _node(self, index: Index) -> int:
        return index.internalId() - 1 if index.isValid() else 0

    def rowCount(self, parent: Index = ROOT) -> int:
        if parent.isValid() and parent.column() != 0:
            return 0
        return len(self._children(self._node(parent)))

    def columnCount(self, parent: Index = ROOT) -> int:
        return 2

    def index(self, row: int, column: int, parent: Index = ROOT) -> QModelIndex:
        kids = self._children(self._node(parent))
        if not (0 <= row < len(kids)) or not (0 <= column < 2):
            return QModelIndex()
        return self.createIndex(row, column, kids[row] + 1)

    def parent(self, index: Index = ROOT) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        parent = self.nodes[self._node(index)][0]
        if parent <= 0:
            return QModelIndex()
        grand = self.nodes[parent][0]
        return self.createIndex(self._children(grand).index(parent), 0, parent + 1)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = DISPLAY) -> Any:
        return column_header(self.COLUMNS, section, orientation, role)

    def data(self, index: Index, role: int = DISPLAY) -> Any:
        if not index.isValid() or role not in (DISPLAY, Qt.ItemDataRole.ToolTipRole):
            return None
        _, key, value = self.nodes[self._node(index)]
        tooltip = role == Qt.ItemDataRole.ToolTipRole
        if index.column() == 0:
            return plain_tooltip(str(key)) if tooltip else cell(str(key))
        if isinstance(value, dict):
            return f"{{{len(value)} keys}}"
        if isinstance(value, list):
            return f"[{len(value)} items]"
        text = (
            "null"
            if value is None
            else str(value).lower()
            if isinstance(value, bool)
            else str(value)
        )
        return plain_tooltip(text) if tooltip else cell(text)
