"""File → Listen for traces: the local OTLP/HTTP receiver inside the window.

The receiver (``tracedesk.core.receiver``) queues what exporters send; a timer hands the
queue to the window's single writer (``window.jobs.write``), which writes it and analyses
the runs that went quiet (``tracedesk.core.live.LiveIngest``). When something was written the
library is reloaded and an open run that grew is shown again. A status-bar indicator shows
the address, the spans received and the errors. On close, the receiver stops and every span
it acknowledged is written before the window goes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel, QMenu, QMenuBar, QMessageBox, QStatusBar

from tracedesk.core.analysis.loops import Rules
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.live import WRITE_SPANS, LiveIngest, Written
from tracedesk.core.receiver import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    TRACE_PATHS,
    PortTaken,
    Receiver,
    SpanQueue,
    free_port,
)
from tracedesk.core.store import Store
from tracedesk.core.text import format_count
from tracedesk.ui.workers import Jobs, Task


class Window(Protocol):
    """What this needs of the main window (named here, not imported: the window imports
    this module)."""

    db_path: Path
    pricing: Pricing
    rules: Rules
    jobs: Jobs
    current_run: str | None

    def reload(self) -> object: ...
    def show_run(self, run_id: str) -> None: ...
    def message(self, icon: QMessageBox.Icon, title: str, text: str) -> Any: ...
    def menuBar(self) -> QMenuBar: ...
    def statusBar(self) -> QStatusBar: ...
    def installEventFilter(self, watched: QObject) -> None: ...


POLL_MS = 300  # how often the queue is handed to the writer
RELOAD_EVERY_S = 1.0  # the library is reloaded at most this often while spans arrive
CLOSE_WAIT_S = 60  # on close, how long to wait for a write in progress


@dataclass
class _Session:
    receiver: Receiver
    queue: SpanQueue
    ingest: LiveIngest
    write_errors: int = 0
    last_error: str = ""
    running: dict[Task, threading.Event] = field(default_factory=dict)


class LiveCapture(QObject):
    """The "Listen for traces" action, its indicator and its writes, for one window."""

    def __init__(self, window: Window, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT):
        super().__init__(cast(QObject, window))
        self.window, self.host, self.port = window, host, port
        self.session: _Session | None = None
        self.draining: list[_Session] = []  # stopped, their last spans still being written
        self.closed = False
        self.last_reload = 0.0
        self.reload_pending = False
        self.action = QAction("&Listen for traces", cast(QObject, window), checkable=True)
        self.action.setStatusTip(
            f"Receive traces over OTLP/HTTP on {host}:{port} ({TRACE_PATHS[0]}) as an agent runs"
        )
        self.action.toggled.connect(self._toggled)
        menu = next(m for m in window.menuBar().findChildren(QMenu) if m.title() == "&File")
        quit_action = next(a for a in menu.actions() if a.text() == "&Quit")
        menu.insertAction(quit_action, self.action)
        menu.insertSeparator(quit_action)
        self.indicator = QLabel()
        self.indicator.setVisible(False)
        window.statusBar().addPermanentWidget(self.indicator)
        self.timer = QTimer(self, interval=POLL_MS)
        self.timer.timeout.connect(self._tick)
        window.installEventFilter(self)

    # -- starting and stopping ----------------------------------------------------------

    def _toggled(self, on: bool) -> None:
        if on and self.session is None:
            if not self.start():
                self.action.setChecked(False)
        elif not on and self.session is not None:
            self.stop()

    def start(self) -> bool:
        """Listen; when the port is taken, on another one (and say so)."""
        queue = SpanQueue()
        note = ""
        try:
            try:
                receiver = Receiver(queue, self.host, self.port)
            except PortTaken as exc:
                receiver = Receiver(queue, self.host, free_port(self.host, self.port or None))
                note = f"{exc}; listening on port {receiver.port} instead"
        except OSError as exc:
            self.window.message(QMessageBox.Icon.Warning, "Cannot listen for traces",
                                f"Cannot listen on {self.host}:{self.port}: {exc}")  # fmt: skip
            return False
        ingest = LiveIngest(f"live capture on {receiver.address}", self.window.pricing,
                            self.window.rules)  # fmt: skip
        self.session = _Session(receiver.start(), queue, ingest)
        self.timer.start()
        self.indicator.setVisible(True)
        self._show()
        self.window.statusBar().showMessage(
            note or f"Listening for traces on {receiver.url}", 10000
        )
        return True

    def stop(self) -> None:
        """Stop listening; what was acknowledged is written (and analysed) by the writer."""
        session, self.session = self.session, None
        if session is None:
            return
        session.receiver.stop()
        self.timer.stop()
        self.draining.append(session)
        self._write(session, force=True)
        self.indicator.setVisible(False)
        self.action.setChecked(False)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.window and event.type() == QEvent.Type.Close:
            self.shutdown()
        return False

    def shutdown(self) -> None:
        """The window closes: stop, wait for a write in progress, write the rest here."""
        self.closed = True
        sessions = [*self.draining, *([self.session] if self.session else [])]
        self.session, self.draining = None, []
        if not sessions:
            return
        self.timer.stop()
        for session in sessions:
            session.receiver.stop()
        jobs = self.window.jobs
        jobs.cancel("live")  # the queued ones are dropped: everything is written below
        if jobs.writing is not None and jobs.writing[0] == "live":
            for session in sessions:
                done = session.running.get(jobs.writing[1])
                if done is not None:
                    done.wait(CLOSE_WAIT_S)
        with Store(self.window.db_path) as store:  # SQLite's lock waits for any other writer
            for session in sessions:
                _drain(session, store, force=True)

    # -- writing ------------------------------------------------------------------------

    def _tick(self) -> None:
        session = self.session
        if session is None:
            return
        if self.reload_pending:
            self._reload(set())
        if not session.running and (session.queue.pending or session.ingest.due()):
            self._write(session, force=False)
        self._show()

    def _write(self, session: _Session, force: bool) -> None:
        done = threading.Event()

        def work(_report: Any, _cancelled: Any) -> Written:
            try:
                with Store(self.window.db_path) as store:  # the writer's own connection
                    return _drain(session, store, force)
            finally:
                done.set()

        task = Task(work)
        session.running[task] = done

        def finished(written: Written) -> None:
            session.running.pop(task, None)
            if force and session in self.draining:
                self.draining.remove(session)
            if not self.closed:
                self._reload(written.runs)
                self._show()

        def failed(exc: Exception) -> None:
            session.running.pop(task, None)
            session.write_errors += 1
            session.last_error = f"could not write the spans received: {exc}"
            if not self.closed:
                self._show()

        self.window.jobs.write("live", task, lambda: None, finished, failed)

    def _reload(self, runs: set[str]) -> None:
        """Show what was written: the library (at most every RELOAD_EVERY_S), and the open
        run again if it changed."""
        window = self.window
        if runs or self.reload_pending:
            now = time.monotonic()
            if now - self.last_reload >= RELOAD_EVERY_S:
                self.last_reload, self.reload_pending = now, False
                window.reload()
            else:
                self.reload_pending = True
        if window.current_run is not None and window.current_run in runs:
            window.show_run(window.current_run)

    def _show(self) -> None:
        session = self.session
        if session is None:
            return
        stats = session.receiver.stats
        errors = stats.errors + session.write_errors
        self.indicator.setText(
            f"● Listening on {session.receiver.address} · {format_count(stats.spans)} spans"
            f" · {format_count(errors)} errors"
        )
        last = session.last_error or stats.last_error
        self.indicator.setToolTip(
            f"OTLP/HTTP: http://{session.receiver.address}{TRACE_PATHS[0]} (protobuf or JSON);"
            f" Langfuse SDK: base URL http://{session.receiver.address}\n"
            f"{stats.requests} requests, {stats.rejected_spans} spans rejected"
            + (f"\nLast error: {last}" if last else "")
        )

    @property
    def listening(self) -> bool:
        return self.session is not None


def _drain(session: _Session, store: Store, force: bool) -> Written:
    """Write everything queued, then analyse the runs that are due (all of them if forced)."""
    written = Written()
    while records := session.queue.take(WRITE_SPANS):
        batch = session.ingest.write(store, records)
        written.steps += batch.steps
        written.skipped += batch.skipped
        written.runs |= batch.runs
    written.runs |= session.ingest.settle(store, force).runs
    return written


def install(window: Window) -> LiveCapture:
    """Add File → Listen for traces and its status-bar indicator to the window."""
    return LiveCapture(window)
