"""The session view: the runs of one conversation (session, thread, group) in the order
they started, with the session's total cost and incidents."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Signal
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QVBoxLayout, QWidget

from tracedesk.core.export import format_usd
from tracedesk.core.model import Run
from tracedesk.core.store import Store
from tracedesk.core.store.queries import Session
from tracedesk.core.text import format_duration, plural
from tracedesk.ui.models import RUN_ID_ROLE, RunsTableModel
from tracedesk.ui.theme import fit_to_screen, plain_label


def read_session(store: Store, session_id: str) -> tuple[Session | None, list[Run]]:
    """What the session view shows; run in a worker."""
    return store.session(session_id), store.session_runs(session_id)


def session_summary(session: Session) -> str:
    span = (None if session.first_ns is None or session.last_ns is None
            else session.last_ns - session.first_ns)  # fmt: skip
    cost = format_usd(session.cost) if session.cost is not None else "no cost"
    return (f"Session {session.id}: {plural(session.runs, 'run')}, {plural(session.steps, 'step')},"
            f" {cost}, {plural(session.incidents, 'incident')},"
            f" {plural(session.errors, 'failed step')}, over {format_duration(span)}")  # fmt: skip


class SessionView(QWidget):
    """A window listing a session's runs, oldest first; double-click opens a run."""

    open_run = Signal(str)

    def __init__(self, session: Session, runs: list[Run], parent=None):
        super().__init__(parent)
        self.session = session
        self.setWindowTitle(f"Session {session.id} — tracedesk")
        self.summary = plain_label(session_summary(session))
        self.summary.setContentsMargins(6, 4, 6, 4)
        self.model = RunsTableModel(self)
        self.model.load(runs)
        self.model.sort(9, Qt.SortOrder.AscendingOrder)  # start time: the conversation's order
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        for column, width in enumerate((190, 240, 150, 50, 60, 80, 70, 50, 150, 135)):
            self.table.setColumnWidth(column, width)
        self.table.doubleClicked.connect(self._open)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.table)
        fit_to_screen(self, 1100, 420)

    def run_ids(self) -> list[str]:
        return [self.model.index(r, 0).data(RUN_ID_ROLE) for r in range(self.model.rowCount())]

    def _open(self, index: QModelIndex) -> None:
        self.open_run.emit(index.data(RUN_ID_ROLE))
