"""The search bar over the step tree: the search language of ``tracedesk.core.search``,
matches highlighted or the rest hidden, F3 / Shift+F3 to walk the matches."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QLineEdit, QToolButton, QWidget

SEARCH_DELAY_MS = 250  # typing pauses this long before a search runs


class StepSearchBar(QWidget):
    """Emits ``search(query)`` when the typing settles, ``mode_changed(filter on)`` and
    ``step(+1 / -1)`` for the next and previous match."""

    search = Signal(str)
    mode_changed = Signal(bool)
    step = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.field = QLineEdit(clearButtonEnabled=True)
        self.field.setPlaceholderText(
            'Find steps: words, "a phrase", tool:fetch_url, status:error, cost>0.01 …'
        )
        self.field.setToolTip(
            "AND by default; OR, NOT, -term and (…) work too. Fields: tool, model, name,"
            " provider, kind, status, session, finding, cost, tokens, duration, attr.KEY"
        )
        self.mode = QComboBox()
        self.mode.addItems(["Highlight", "Filter"])
        self.mode.setToolTip("Highlight matches, or show only them (and their ancestors)")
        self.previous = QToolButton(text="▲", toolTip="Previous match (Shift+F3)")
        self.next = QToolButton(text="▼", toolTip="Next match (F3)")
        self.count = QLabel()
        self.count.setMinimumWidth(90)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addWidget(self.field, 1)
        for widget in (self.mode, self.previous, self.next, self.count):
            layout.addWidget(widget)
        self.timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self.timer.timeout.connect(lambda: self.search.emit(self.field.text().strip()))
        self.field.textChanged.connect(lambda _text: self.timer.start())
        self.field.returnPressed.connect(self._enter)
        self.mode.currentIndexChanged.connect(lambda i: self.mode_changed.emit(i == 1))
        self.previous.clicked.connect(lambda: self.step.emit(-1))
        self.next.clicked.connect(lambda: self.step.emit(1))

    def _enter(self) -> None:
        if self.timer.isActive():
            self.timer.stop()
            self.search.emit(self.field.text().strip())
        else:
            self.step.emit(1)

    @property
    def filtering(self) -> bool:
        return self.mode.currentIndex() == 1

    def show_count(self, position: int | None, total: int) -> None:
        if not self.field.text().strip():
            self.count.setText("")
        elif total == 0:
            self.count.setText("no match")
        elif position is None:
            self.count.setText(f"{total} match{'es' if total != 1 else ''}")
        else:
            self.count.setText(f"{position + 1} of {total}")

    def show_problem(self, message: str) -> None:
        self.count.setText("bad query")
        self.count.setToolTip(message)
        self.field.setToolTip(message)

    def clear_problem(self) -> None:
        self.count.setToolTip("")


def focus(bar: StepSearchBar) -> None:
    bar.field.setFocus(Qt.FocusReason.ShortcutFocusReason)
    bar.field.selectAll()
