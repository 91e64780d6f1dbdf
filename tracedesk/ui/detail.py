"""The detail pane: everything about one step. Payloads are always plain text (trace
content is never read as HTML), pretty-printed, collapsible as a tree, and copyable."""

from __future__ import annotations

from collections.abc import Callable
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

from tracedesk.core.analysis.cost import CostSource, StepCost
from tracedesk.core.export import format_usd
from tracedesk.core.model import Step
from tracedesk.core.store.queries import Preview
from tracedesk.core.text import format_duration, shorten, visible
from tracedesk.ui.models import JsonModel
from tracedesk.ui.theme import plain_label

SHOWN_CHARS = 200_000  # a longer payload is shown in part ("Show all"; Copy takes it whole)
LINE_CHARS = 4_000  # a longer line is broken for display: laying out one huge line freezes Qt


def for_display(text: str) -> str:
    """Text as the pane shows it: controls spelled out, very long lines broken."""
    lines = visible(text).split("\n")
    if all(len(line) <= LINE_CHARS for line in lines):
        return "\n".join(lines)
    return "\n".join(
        "\n".join(line[i : i + LINE_CHARS] for i in range(0, len(line), LINE_CHARS)) or line
        for line in lines
    )


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
        self.partial = False  # full_text is only the start of a Preview
        # Reads the whole value in a worker and hands it to the callback.
        self.fetch_full: Callable[[Callable[[Any], None]], None] | None = None
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.tree = QTreeView()
        self.tree.setUniformRowHeights(True)
        self.model = JsonModel()
        self.tree.setModel(self.model)
        for view in (self.text, self.tree):  # a cramped pane keeps its buttons apart
            view.setMinimumHeight(24)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.text)
        self.stack.addWidget(self.tree)
        self.note = QLabel(textFormat=Qt.TextFormat.PlainText)
        self.note.setVisible(False)
        self.toggle = QPushButton(
            "Tree", checkable=True, toolTip="Show the JSON as a collapsible tree"
        )
        self.toggle.toggled.connect(lambda on: self.stack.setCurrentIndex(1 if on else 0))
        self.show_all = QPushButton("Show all", toolTip="Show the whole payload (may be slow)")
        self.show_all.clicked.connect(self._show_all)
        self.show_all.setVisible(False)
        self.copy = QPushButton("Copy", toolTip="Copy the whole payload")
        self.copy.clicked.connect(self._copy)
        buttons = QHBoxLayout()
        buttons.addWidget(self.note)
        buttons.addStretch(1)
        buttons.addWidget(self.show_all)
        buttons.addWidget(self.toggle)
        buttons.addWidget(self.copy)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.stack)

    def show_value(self, value: Any) -> None:
        self.partial = isinstance(value, Preview)
        self.full_text = pretty(value)
        self._show(SHOWN_CHARS)
        structured = isinstance(value, (dict, list))
        self.toggle.setEnabled(structured)
        if not structured:
            self.toggle.setChecked(False)
        self.model.set_value(value if structured else None)
        if structured:
            self.tree.expandToDepth(0)

    def _show(self, chars: int) -> None:
        self.text.setPlainText(for_display(self.full_text[:chars]))
        cut = self.partial or len(self.full_text) > chars
        if self.partial:
            note = (
                f"Showing the start of a longer value ({chars // 1000:,} k characters of its JSON)"
            )
        else:
            note = f"Showing the first {chars // 1000:,} k of {len(self.full_text) // 1000:,} k characters"
        self.note.setText(f"{note}; Copy takes all." if cut else "")
        self.note.setVisible(cut)
        self.show_all.setVisible(cut)

    def _whole(self, then: Callable[[], None]) -> None:
        """Call ``then`` with the whole value shown, reading it first if only its start is
        here."""
        if not self.partial:
            then()
        elif self.fetch_full is not None:
            self.note.setText("Reading the whole value…")

            def arrived(value: Any) -> None:
                self.show_value(value)
                if not self.partial:
                    then()

            self.fetch_full(arrived)

    def _show_all(self) -> None:
        self._whole(lambda: self._show(len(self.full_text)))

    def _copy(self) -> None:
        self._whole(lambda: QGuiApplication.clipboard().setText(self.full_text))


def cost_text(cost: StepCost) -> str | None:
    """What a step's cost is made of, one usage type a line, and where its price came from."""
    if cost.source == CostSource.NONE:
        return None
    if cost.lines:
        width = max(len(line.text()) for line in cost.lines)
        text = "\n".join(f"{line.text():<{width}}  {format_usd(line.cost)}" for line in cost.lines)
        text += f"\n{'= ' + format_usd(cost.cost):>{width + 2 + len(format_usd(cost.cost))}}"
    else:
        text = cost.text()
    if cost.price_source:
        dated = f", in force from {cost.price_date}" if cost.price_date else ""
        text += f"\n\nprice: {cost.price_source}{dated}"
    return text


class DetailPane(QWidget):
    """Summary line and payload tabs of the selected step."""

    TABS = ("Input", "Output", "Tool arguments", "Error", "Cost", "Attributes")

    def __init__(self, parent=None):
        super().__init__(parent)
        self.summary = plain_label("Select a step.")
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.tabs = QTabWidget()
        self.views: dict[str, PayloadView] = {}
        # Reads a step whole in a worker, for a payload that came as a Preview, and hands it
        # to the callback (set by the window).
        self.loader: Callable[[Step, Callable[[Step | None], None]], None] | None = None
        for name in self.TABS:
            view = PayloadView()
            view.fetch_full = lambda done, n=name: self._whole_value(n, done)
            self.views[name] = view
            self.tabs.addTab(view, name)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.tabs, 1)
        self.step: Step | None = None

    def _whole_value(self, tab: str, done: Callable[[Any], None]) -> None:
        asked_for = self.step
        if self.loader is None or asked_for is None:
            return

        def arrived(whole: Step | None) -> None:
            if whole is not None and self.step is asked_for:  # else another step is shown
                done({"Input": whole.input, "Output": whole.output}.get(tab))

        self.loader(asked_for, arrived)

    def show_step(self, step: Step | None, cost: StepCost | None = None) -> None:
        """Show a step; ``cost`` explains its cost line by line."""
        self.step = step
        if step is None:
            self.summary.setText("Select a step.")
            for view in self.views.values():
                view.show_value(None)
            return
        lines = [
            f"{shorten(step.name, 200)}  ·  {step.kind}  ·  {step.status}"
            f"  ·  {format_duration(step.duration_ns)}"
        ]
        if step.model or step.provider:
            lines.append(
                f"model {shorten(step.model or '?', 120)}"
                + (f" ({shorten(step.provider, 60)})" if step.provider else "")
            )
        if step.input_tokens is not None or step.output_tokens is not None:
            written, hour = step.cache_creation_tokens, step.cache_write_1h_tokens
            lines.append(
                f"tokens: {step.input_tokens or 0} in ({step.cached_input_tokens or 0} cached"
                + (f", {written} cache writes" if written else "")
                + (f" ({hour} for 1 hour)" if written and hour else "")
                + f"), {step.output_tokens or 0} out ({step.reasoning_tokens or 0} reasoning)"
            )
        if step.cost is not None or step.cost_source not in (None, "none"):
            lines.append(f"cost: {format_usd(step.cost)} ({step.cost_source}; see Cost)")
        if step.tool_name:
            lines.append(f"tool: {shorten(step.tool_name, 120)}")
        lines.append(f"id: {shorten(step.id, 120)}")
        self.summary.setText("\n".join(lines))
        values = {
            "Input": step.input, "Output": step.output, "Tool arguments": step.tool_args,
            "Error": step.error, "Cost": cost_text(cost) if cost else None,
            "Attributes": step.attributes or None,
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
