"""The waterfall: a column of the step tree that draws each step's bar where it ran within
the run, so bars line up with the tree's rows and follow its expand, collapse, scrolling and
selection. Only the visible rows are painted, whatever the run's size.

Bars are coloured by kind, or by cost in the heat mode; failed steps are outlined in red;
the steps of a chosen incident take a colour no kind uses while the others are dimmed.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from tracedesk.core.export import format_usd
from tracedesk.core.model import Status, from_pusd
from tracedesk.ui.theme import ERROR_COLOR, INCIDENT_COLOR, kind_color, kind_icon

HEAT_LOW, HEAT_HIGH = QColor("#FDE8A0"), QColor("#B10026")  # cheapest and dearest step
NO_COST = QColor("#C8C8C8")
DIMMED_ALPHA = 110  # the rest of the run, while an incident is chosen: still legible


def tick_step(span: float, ticks: int) -> float:
    """A round interval (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks."""
    if span <= 0:
        return 1.0
    raw = span / max(ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def tick_label(ns: float, step_ns: float) -> str:
    """A tick's time in the unit of the tick interval, with only the decimals it needs:
    "20 s", "2.5 s", "150 ms", "0.6 ms"."""
    # The largest unit of which the interval is at least a tenth: "2.5 s", not "2500 ms".
    unit, scale = next(((u, f) for u, f in (("s", 1e9), ("ms", 1e6), ("µs", 1e3))
                        if step_ns >= f / 10), ("ns", 1.0))  # fmt: skip
    decimals = max(0, -math.floor(math.log10(step_ns / scale) + 1e-9)) if step_ns > 0 else 0
    return f"{ns / scale:.{decimals}f} {unit}"


def _ticks(rect: QRect) -> int:
    return max(2, (rect.width() - 8) // 90)


def tick_positions(rect: QRect, span_ns: int) -> list[int]:
    """The x of each time tick across a waterfall cell (or its header)."""
    if span_ns <= 0:
        return []
    width = rect.width() - 8
    step_ns = tick_step(span_ns / 1e9, _ticks(rect)) * 1e9
    count = int(span_ns / step_ns) + 1
    return [rect.left() + 4 + round(width * n * step_ns / span_ns) for n in range(count)]


def heat_color(cost_pusd: int | None, low: int, high: int) -> QColor:
    """A step's colour by its cost on a log scale between the run's cheapest and dearest."""
    if not cost_pusd or cost_pusd <= 0:
        return NO_COST
    t = 0.0 if high <= low else math.log(cost_pusd / low) / math.log(high / low)
    t = min(max(t, 0.0), 1.0)
    return QColor.fromRgbF(
        HEAT_LOW.redF() + (HEAT_HIGH.redF() - HEAT_LOW.redF()) * t,
        HEAT_LOW.greenF() + (HEAT_HIGH.greenF() - HEAT_LOW.greenF()) * t,
        HEAT_LOW.blueF() + (HEAT_HIGH.blueF() - HEAT_LOW.blueF()) * t,
    )


class WaterfallDelegate(QStyledItemDelegate):
    """Paints the waterfall column of a StepTreeModel."""

    def __init__(self, model, parent=None):
        super().__init__(parent)
        self.model = model
        self.heat = False

    def bar_rect(self, rect: QRect, start_ns: int | None, end_ns: int | None) -> QRectF | None:
        model = self.model
        if start_ns is None or model.span_ns <= 0:
            return None
        width = rect.width() - 8
        x0 = rect.left() + 4 + width * (start_ns - model.origin_ns) / model.span_ns
        end = end_ns if end_ns is not None and end_ns >= start_ns else start_ns
        x1 = rect.left() + 4 + width * (end - model.origin_ns) / model.span_ns
        height = rect.height()
        return QRectF(x0, rect.top() + height * 0.22, max(x1 - x0, 2.0), height * 0.56)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:  # fmt: skip
        style = option.widget.style() if option.widget else None
        if style is not None:  # the row's background and selection, as the other cells
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, option, painter,
                                option.widget)  # fmt: skip
        model = self.model
        step = model.steps[model._node(index)]
        painter.save()
        grid = QColor(option.palette.text().color())
        grid.setAlpha(28)
        painter.setPen(QPen(grid, 1))
        for x in tick_positions(option.rect, model.span_ns):
            painter.drawLine(x, option.rect.top(), x, option.rect.bottom())
        bar = self.bar_rect(option.rect, step.start_ns, step.end_ns)
        if bar is not None:
            chosen = bool(model.highlighted)
            if chosen and step.id in model.highlighted:
                color = QColor(INCIDENT_COLOR)
            elif self.heat:
                color = heat_color(step.cost_pusd, model.cost_low, model.cost_high)
            else:
                color = kind_color(step.kind)
            if chosen and step.id not in model.highlighted:
                color.setAlpha(DIMMED_ALPHA)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
            painter.fillRect(bar, color)
            if step.status == Status.ERROR:
                painter.setPen(QPen(QColor(ERROR_COLOR), 2))
                painter.drawRect(bar.adjusted(1, 1, -1, -1))
        painter.restore()


class WaterfallHeader(QHeaderView):
    """The tree's header, with a time axis over the waterfall column."""

    def __init__(self, model, parent=None):
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.tree_model = model

    def paintSection(self, painter: QPainter, rect: QRect, logical_index: int) -> None:
        super().paintSection(painter, rect, logical_index)
        model = self.tree_model
        if logical_index != model.WATERFALL or model.span_ns <= 0:
            return
        painter.save()
        painter.setPen(self.palette().text().color())
        metrics = painter.fontMetrics()
        painter.fillRect(rect.adjusted(1, 1, -1, -1), self.palette().button())
        step_ns = tick_step(model.span_ns / 1e9, _ticks(rect)) * 1e9
        for n, x in enumerate(tick_positions(rect, model.span_ns)):
            label = tick_label(n * step_ns, step_ns) if n else "0"
            text_width = metrics.horizontalAdvance(label)
            left = min(max(x - text_width // 2, rect.left() + 2), rect.right() - text_width - 2)
            painter.drawLine(x, rect.bottom() - 4, x, rect.bottom())
            painter.drawText(left + 3 if n else left, rect.top() + metrics.ascent() + 3, label)
        painter.restore()


class Legend(QWidget):
    """What the bars' colours mean: the run's kinds, or the cost scale in the heat mode."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(6, 0, 6, 2)
        self.row.setSpacing(10)

    def show_kinds(self, kinds: list[str], incident: bool) -> None:
        self._clear()
        for kind in kinds:
            self._entry(kind_icon(kind).pixmap(12, 12), kind)
        self._swatch(QColor(ERROR_COLOR), "error (outline)", outline=True)
        if incident:
            self._swatch(QColor(INCIDENT_COLOR), "chosen incident")
        self.row.addStretch(1)

    def show_heat(self, low: int, high: int) -> None:
        self._clear()
        if high:
            self._swatch(HEAT_LOW, f"cheapest {format_usd(from_pusd(low))}")
            self._swatch(HEAT_HIGH, f"dearest {format_usd(from_pusd(high))}")
        self._swatch(NO_COST, "no cost")
        self.row.addStretch(1)

    def _clear(self) -> None:
        while self.row.count():
            item = self.row.takeAt(0)
            widget = item.widget()
            if widget is not None:  # out of sight now: deleteLater is only later
                widget.hide()
                widget.deleteLater()

    def _swatch(self, color: QColor, text: str, outline: bool = False) -> None:
        pixmap = QPixmap(14, 10)
        pixmap.fill(Qt.GlobalColor.transparent if outline else color)
        if outline:
            painter = QPainter(pixmap)
            painter.setPen(QPen(color, 2))
            painter.drawRect(1, 1, 12, 8)
            painter.end()
        self._entry(pixmap, text)

    def _entry(self, pixmap, text: str) -> None:
        icon = QLabel()
        icon.setPixmap(pixmap)
        label = QLabel(text, textFormat=Qt.TextFormat.PlainText)
        pair = QHBoxLayout()
        pair.setSpacing(3)
        pair.addWidget(icon)
        pair.addWidget(label)
        holder = QWidget()
        holder.setLayout(pair)
        pair.setContentsMargins(0, 0, 0, 0)
        self.row.addWidget(holder)
