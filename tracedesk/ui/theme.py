"""Colours, icons and text labels shared by the views: one colour per step kind, one per
severity."""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QPoint, QSize, Qt
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from tracedesk.core.model import StepKind

KIND_COLORS: dict[str, str] = {
    StepKind.AGENT: "#4C78A8",
    StepKind.LLM: "#B279A2",
    StepKind.TOOL: "#F58518",
    StepKind.HANDOFF: "#54A24B",
    StepKind.GUARDRAIL: "#EECA3B",
    StepKind.RETRIEVER: "#72B7B2",
    StepKind.EMBEDDING: "#9D755D",
    StepKind.CHAIN: "#79706E",
    StepKind.EVENT: "#BAB0AC",
    StepKind.OTHER: "#A0A0A0",
}
ERROR_COLOR = "#E45756"
SEVERITY_COLORS = {"error": "#E45756", "warning": "#F2A900", "info": "#4C78A8"}
# The steps of a chosen incident: a colour no step kind uses.
INCIDENT_COLOR = "#E6007E"
MATCH_COLOR = "#F5C400"  # steps the search found: amber, apart from kinds and incidents


def error_text_color() -> QColor:
    """The red of failed steps' text, lighter on a dark palette so that it stays readable
    on tinted rows (an incident's magenta, a compare row's colour)."""
    dark = QGuiApplication.palette().base().color().lightness() < 128
    return QColor("#FF8A80" if dark else ERROR_COLOR)


def kind_color(kind: str) -> QColor:
    return QColor(KIND_COLORS.get(kind, KIND_COLORS[StepKind.OTHER]))


@cache
def kind_icon(kind: str) -> QIcon:
    """A small filled circle in the kind's colour."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setBrush(kind_color(kind))
    painter.setPen(Qt.PenStyle.NoPen)
    painter.drawEllipse(1, 1, 10, 10)
    painter.end()
    return QIcon(pixmap)


def plain_label(text: str = "") -> QLabel:
    """A label for trace-derived text: plain text (never markup), wrapped, and never wider
    than the layout gives it, however long a word in it is."""
    label = QLabel(text, textFormat=Qt.TextFormat.PlainText, wordWrap=True)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(50)
    return label


def fit_to_screen(window: QWidget, width: int, height: int) -> None:
    """Size a top-level window to at most 92 % of its screen's free area, and centre it: a
    window larger than a laptop screen opens with its edges out of reach."""
    screen = window.screen() or QGuiApplication.primaryScreen()
    if screen is None:
        window.resize(width, height)
        return
    area = screen.availableGeometry()
    size = QSize(min(width, int(area.width() * 0.92)), min(height, int(area.height() * 0.92)))
    window.resize(size)
    window.move(area.center() - QPoint(size.width() // 2, size.height() // 2))
