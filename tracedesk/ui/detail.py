"""The detail pane: everything about one step. Payloads are always plain text (trace
content is never read as HTML), pretty-printed, collapsible as a tree, and copyable."""

from __future__ import annotations

from typing import Any

import orjson
from PySide6.QtCore import Qt
from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from tracedesk.core.export import format_usd
from tracedesk.core.model import Step
from tracedesk.core.text import format_duration
from tracedesk.ui.models import JsonModel

SHOWN_CHARS = 1_000_000  # a longer payload is shown in part (and copied whole)


def pretty(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return orjson.dumps(value, option=orjson.OPT_INDENT_2, default=str).decode()


class PayloadView(QWidget):
    """One payload: text or a collapsible tree, with a Copy button."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.full_text = ""
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.tree = QTreeView()
        self.tree.setUniformRowHeights(True)
        self.model = JsonModel()
        self.tree.setModel(self.model)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.text)
        self.stack.addWidget(self.tree)
        self.note = QLabel(textFormat=Qt.TextFormat.PlainText)
        self.note.setVisible(False)
        self.toggle = QPushButton(
            "Tree", checkable=True, toolTip="Show the JSON as a collapsible tree"
        )
        self.toggle.toggled.connect(lambda on: self.stack.setCurrentIndex(1 if on else 0))
        self.copy = QPushButton("Copy", toolTip="Copy the whole payload")
        self.copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.full_text))
        buttons = QHBoxLayout()
        buttons.addWidget(self.note)
        buttons.addStretch(1)
        buttons.addWidget(self.toggle)
        buttons.addWidget(self.copy)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.stack)

    def show_value(self, value: Any) -> None:
        self.full_text = pretty(value)
        shown = self.full_text[:SHOWN_CHARS]
        self.text.setPlainText(shown)
        cut = len(self.full_text) > SHOWN_CHARS
        self.note.setText(
            f"Showing the first {SHOWN_CHARS // 1000:,} k of {len(self.full_text) // 1000:,} k characters; Copy takes all."
            if cut else ""
        )  # fmt: skip
        self.note.setVisible(cut)
        structured = isinstance(value, (dict, list))
        self.toggle.setEnabled(structured)
        if not structured:
            self.toggle.setChecked(False)
        self.model.set_value(value if structured else None)
        if structured:
            self.tree.expandToDepth(0)


class DetailPane(QWidget):
    """Summary line and payload tabs of the selected step."""

    TABS = ("Input", "Output", "Tool arguments", "Error", "Attributes")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary = QLabel("Select a step.", textFormat=Qt.TextFormat.PlainText, wordWrap=True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tabs = QTabWidget()
        self.views: dict[str, PayloadView] = {}
        for name in self.TABS:
            view = PayloadView()
            self.views[name] = view
            self.tabs.addTab(view, name)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.tabs, 1)
        self.step: Step | None = None

    def show_step(self, step: Step | None) -> None:
        self.step = step
        if step is None:
            self.summary.setText("Select a step.")
            for view in self.views.values():
                view.show_value(None)
            return
        lines = [
            f"{step.name}  ·  {step.kind}  ·  {step.status}  ·  {format_duration(step.duration_ns)}"
        ]
        if step.model or step.provider:
            lines.append(
                f"model {step.model or '?'}" + (f" ({step.provider})" if step.provider else "")
            )
        if step.input_tokens is not None or step.output_tokens is not None:
            written = step.cache_creation_tokens
            lines.append(
                f"tokens: {step.input_tokens or 0} in ({step.cached_input_tokens or 0} cached"
                + (f", {written} cache writes" if written else "")
                + f"), {step.output_tokens or 0} out ({step.reasoning_tokens or 0} reasoning)"
            )
        if step.cost is not None or step.cost_source not in (None, "none"):
            lines.append(f"cost: {format_usd(step.cost)} ({step.cost_source})")
        if step.tool_name:
            lines.append(f"tool: {step.tool_name}")
        lines.append(f"id: {step.id}")
        self.summary.setText("\n".join(lines))
        values = {
            "Input": step.input, "Output": step.output, "Tool arguments": step.tool_args,
            "Error": step.error, "Attributes": step.attributes or None,
        }  # fmt: skip
        for name, value in values.items():
            self.views[name].show_value(value)
            self.tabs.setTabEnabled(self.TABS.index(name), value is not None)
        if step.error:
            self.tabs.setCurrentIndex(self.TABS.index("Error"))
        elif not self.tabs.isTabEnabled(self.tabs.currentIndex()):
            enabled = [i for i in range(len(self.TABS)) if self.tabs.isTabEnabled(i)]
            if enabled:
                self.tabs.setCurrentIndex(enabled[0])
