"""The timeline: one bar per step at its depth, coloured by kind, drawn through one batched
pyqtgraph item per kind so that a 100k-step run stays fluid."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QCursor, QKeyEvent
from PySide6.QtWidgets import QToolTip

from tracedesk.core.export import format_usd
from tracedesk.core.model import Status, from_pusd
from tracedesk.core.text import format_count, format_duration, shorten
from tracedesk.ui.models import StepRow, duration_of, plain_tooltip
from tracedesk.ui.theme import ERROR_COLOR, INCIDENT_COLOR, KIND_COLORS, MATCH_COLOR

BAR_HALF_HEIGHT = 0.38
NS = 1e9


class TimelineView(pg.PlotWidget):
    """Bars of a run's steps. Emits ``step_clicked(step id)``; ``select`` marks one step."""

    step_clicked = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        plot = self.getPlotItem()
        plot.invertY(True)
        plot.showGrid(x=True, y=False, alpha=0.08)
        plot.setLabel("bottom", "seconds since the run started")
        plot.setLabel("left", "depth")
        for side in ("bottom", "left"):  # no "(x1e-06)" beside the label: plain numbers
            plot.getAxis(side).enableAutoSIPrefix(False)
        plot.setMenuEnabled(True)
        plot.hideButtons()
        self.getViewBox().setMouseEnabled(x=True, y=True)
        self.steps: list[StepRow] = []
        self.origin_ns = 0
        self.starts = np.zeros(0)
        self.ends = np.zeros(0)
        self.depths = np.zeros(0, dtype=int)
        self._by_depth: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._kind_items: list[pg.BarGraphItem] = []
        self._overlay_items: dict[str, pg.BarGraphItem] = {}
        self.scene().sigMouseClicked.connect(self._clicked)
        self.scene().sigMouseMoved.connect(self._hovered)

    # -- data ---------------------------------------------------------------------------

    def load(self, steps: list[StepRow]) -> None:
        plot = self.getPlotItem()
        for item in [*self._kind_items, *self._overlay_items.values()]:
            plot.removeItem(item)
        self._kind_items, self._overlay_items = [], {}
        self.steps = steps
        starts = np.array(
            [s.start_ns if s.start_ns is not None else -1 for s in steps], dtype=np.int64
        )
        known = starts[starts >= 0]
        self.origin_ns = int(known.min()) if known.size else 0
        starts = np.where(starts >= 0, starts, self.origin_ns)
        ends = np.array([s.end_ns if s.end_ns is not None else -1 for s in steps], dtype=np.int64)
        ends = np.where(ends >= starts, ends, starts)
        self.starts = (starts - self.origin_ns) / NS
        self.ends = (ends - self.origin_ns) / NS
        self.depths = np.array([s.depth for s in steps], dtype=int)
        kinds = np.array([s.kind for s in steps])
        for kind, color in KIND_COLORS.items():
            mask = kinds == kind
            if mask.any():
                self._kind_items.append(self._bars(mask, brush=color))
                # A bar narrower than a pixel would vanish: a one-pixel line through every
                # bar keeps each visible. One path for all is far cheaper to redraw than an
                # outline pen per bar.
                self._kind_items.append(self._marks(mask, color))
        errors = np.array([s.status == Status.ERROR for s in steps], dtype=bool)
        if errors.any():
            self._kind_items.append(self._bars(errors, pen=pg.mkPen(ERROR_COLOR, width=2)))
        for item in self._kind_items:
            plot.addItem(item)
        self._by_depth = {}
        for depth in np.unique(self.depths) if steps else ():
            rows = np.nonzero(self.depths == depth)[0]
            order = rows[np.argsort(self.starts[rows], kind="stable")]
            self._by_depth[int(depth)] = (self.starts[order], self.ends[order], order)
        top = int(self.depths.max()) if steps else 0
        step = max(1, (top + 1) // 12)
        plot.getAxis("left").setTicks([[(d, str(d)) for d in range(0, top + 1, step)], []])
        self.fit()

    def _bars(self, mask: np.ndarray, brush=None, pen=None, grow: float = 0.0) -> pg.BarGraphItem:
        depths = self.depths[mask]
        return pg.BarGraphItem(
            x0=self.starts[mask], x1=self.ends[mask],
            y0=depths - BAR_HALF_HEIGHT - grow, y1=depths + BAR_HALF_HEIGHT + grow,
            brush=brush, pen=pen if pen is not None else pg.mkPen(None),
        )  # fmt: skip

    def _marks(self, mask: np.ndarray, color: str) -> pg.PlotCurveItem:
        middles = (self.starts[mask] + self.ends[mask]) / 2
        depths = self.depths[mask]
        xs = np.repeat(middles, 2)
        ys = np.empty(xs.size)
        ys[0::2], ys[1::2] = depths - BAR_HALF_HEIGHT, depths + BAR_HALF_HEIGHT
        return pg.PlotCurveItem(xs, ys, connect="pairs", pen=pg.mkPen(color, width=1))

    def fit(self) -> None:
        if self.steps:
            span = max(float(self.ends.max()), 1e-6)
            self.setXRange(0, span, padding=0.02)
            self.setYRange(-0.6, float(self.depths.max()) + 0.6, padding=0)

    def _overlay(self, name: str, rows: list[int], **style) -> None:
        plot = self.getPlotItem()
        if name in self._overlay_items:
            plot.removeItem(self._overlay_items.pop(name))
        if rows:
            mask = np.zeros(len(self.steps), dtype=bool)
            mask[rows] = True
            item = self._bars(mask, **style)
            item.setZValue(10 if name == "selection" else 5)
            plot.addItem(item)
            self._overlay_items[name] = item

    def highlight(self, rows: list[int]) -> None:
        """Mark the steps of a loop incident."""
        color = pg.mkColor(INCIDENT_COLOR)
        color.setAlpha(90)
        self._overlay("loop", rows, brush=color, pen=pg.mkPen(INCIDENT_COLOR, width=2), grow=0.08)

    def mark_matches(self, rows: list[int]) -> None:
        """Mark the steps the search found."""
        color = pg.mkColor(MATCH_COLOR)
        color.setAlpha(120)
        self._overlay("matches", rows, brush=color, pen=pg.mkPen(MATCH_COLOR, width=2), grow=0.12)

    def select(self, row: int | None) -> None:
        """Outline one step and scroll it into view."""
        self._overlay("selection", [] if row is None else [row],
                      pen=pg.mkPen(self.palette().text().color(), width=3))  # fmt: skip
        if row is None:
            return
        (x0, x1), _ = self.getViewBox().viewRange()
        start, end = self.starts[row], self.ends[row]
        if end < x0 or start > x1:
            width = x1 - x0
            center = (start + end) / 2
            self.setXRange(center - width / 2, center + width / 2, padding=0)

    # -- interaction ------------------------------------------------------------------

    def row_at(self, x: float, y: float) -> int | None:
        """The step whose bar is under the point (view coordinates)."""
        depth = round(y)
        if abs(y - depth) > BAR_HALF_HEIGHT or depth not in self._by_depth:
            return None
        starts, ends, rows = self._by_depth[depth]
        pos = int(np.searchsorted(starts, x, side="right")) - 1
        tolerance = (
            self.getViewBox().viewRange()[0][1] - self.getViewBox().viewRange()[0][0]
        ) / 400
        for candidate in range(pos, max(pos - 64, -1), -1):  # latest start that still covers x
            if ends[candidate] + tolerance >= x:
                return int(rows[candidate])
        return None

    def _scene_row(self, scene_pos: QPointF) -> int | None:
        if not self.steps or not self.getPlotItem().sceneBoundingRect().contains(scene_pos):
            return None
        point = self.getViewBox().mapSceneToView(scene_pos)
        return self.row_at(point.x(), point.y())

    def _clicked(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        row = self._scene_row(event.scenePos())
        if row is not None:
            self.step_clicked.emit(self.steps[row].id)

    def _hovered(self, scene_pos: QPointF) -> None:
        row = self._scene_row(scene_pos)
        if row is None:
            QToolTip.hideText()
            return
        step = self.steps[row]
        tokens = step.input_tokens + step.output_tokens
        lines = [shorten(step.name or step.id, 200),
                 f"{step.kind} · {format_duration(duration_of(step))}"]  # fmt: skip
        if tokens:
            lines.append(f"{format_count(tokens)} tokens")
        if step.cost_pusd:
            lines.append(format_usd(from_pusd(step.cost_pusd)))
        QToolTip.showText(QCursor.pos(), plain_tooltip("\n".join(lines)), self)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        view = self.getViewBox()
        (x0, x1), _ = view.viewRange()
        key = event.key()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            view.scaleBy((0.7, 1))
        elif key == Qt.Key.Key_Minus:
            view.scaleBy((1 / 0.7, 1))
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            shift = (x1 - x0) * 0.15 * (-1 if key == Qt.Key.Key_Left else 1)
            self.setXRange(x0 + shift, x1 + shift, padding=0)
        elif key in (Qt.Key.Key_Home, Qt.Key.Key_0):
            self.fit()
        else:
            super().keyPressEvent(event)
