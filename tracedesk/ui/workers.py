"""Long work off the UI thread: a QThreadPool task whose result, error and progress come
back to the main thread as signals, and the window's job runner (``Jobs``): one writer at
a time, stale reads dropped."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from tracedesk.core.collector import collector_paused
from tracedesk.core.store import Store


class TaskSignals(QObject):
    progress = Signal(int, int)  # done, total
    done = Signal(object)
    failed = Signal(object)  # the exception


class Task(QRunnable):
    """Runs ``fn(report, cancelled)`` in the pool; ``report(done, total)`` posts progress."""

    def __init__(self, fn: Callable[[Callable[[int, int], None], Callable[[], bool]], Any]):
        super().__init__()
        self.fn = fn
        self.signals = TaskSignals()
        self._cancel = threading.Event()
        self.setAutoDelete(False)  # the window keeps a reference until the signals arrive

    def cancel(self) -> None:
        self._cancel.set()

    def run(self) -> None:
        try:
            result = self.fn(self.signals.progress.emit, self._cancel.is_set)
        except BaseException as exc:  # reported to the UI, never lost in the pool
            exc.__traceback_text__ = traceback.format_exc()  # type: ignore[attr-defined]
            self.signals.failed.emit(exc)
        else:
            self.signals.done.emit(result)


def run_task(
    task: Task, on_done: Callable[[Any], None], on_failed: Callable[[Exception], None]
) -> Task:
    task.signals.done.connect(on_done)
    task.signals.failed.connect(on_failed)
    QThreadPool.globalInstance().start(task)
    return task


class Jobs:
    """Every background job of a window, in one place.

    Reads run side by side; each has a kind ("charts", …), and a result arrives only if no
    newer read of its kind was asked for since, so an old result never overwrites a newer
    one. Writes (imports, re-analysis) run one at a time, in the order they were asked for,
    so that two writers never wait on each other's lock.
    """

    def __init__(self, owner: QObject) -> None:
        self.owner = owner  # results for a window that is gone are dropped
        self._latest: dict[str, int] = {}
        self._reads: set[Task] = set()  # kept alive until their signals arrive
        self._writes: list[tuple[str, Task, Callable[[], None], Callable[[Any], None],
                                 Callable[[Exception], None]]] = []  # fmt: skip
        self.writing: tuple[str, Task] | None = None

    def read(self, kind: str, fn: Callable[[], Any], on_done: Callable[[Any], None],
             on_failed: Callable[[Exception], None]) -> Task:  # fmt: skip
        token = self._latest[kind] = self._latest.get(kind, 0) + 1
        task = Task(lambda report, cancelled: fn())

        def finish(callback: Callable[[Any], None], value: Any) -> None:
            self._reads.discard(task)
            # Else a newer request of this kind is coming, or the window is gone.
            if self._latest[kind] == token and shiboken6.isValid(self.owner):
                callback(value)

        self._reads.add(task)
        return run_task(task, lambda r: finish(on_done, r), lambda e: finish(on_failed, e))

    def query(self, kind: str, db: Path, fn: Callable[[Store], Any],
              on_done: Callable[[Any], None], on_failed: Callable[[Exception], None]) -> Task:  # fmt: skip
        """A read of the database on a connection of its own: no query runs on the UI thread,
        and a connection never crosses threads."""

        def work() -> Any:
            with Store(db) as store, collector_paused():  # rows and dataclasses: no cycles
                return fn(store)

        return self.read(kind, work, on_done, on_failed)

    def write(self, kind: str, task: Task, on_start: Callable[[], None],
              on_done: Callable[[Any], None], on_failed: Callable[[Exception], None]) -> Task:  # fmt: skip
        """Queue a writing task; ``on_start`` is called as it starts."""
        self._writes.append((kind, task, on_start, on_done, on_failed))
        self._next()
        return task

    def queued(self, kind: str) -> int:
        return sum(k == kind for k, *_ in self._writes)

    def cancel(self, kind: str) -> None:
        """Drop the queued writes of a kind and ask the running one, if of that kind, to stop."""
        self._writes = [w for w in self._writes if w[0] != kind]
        if self.writing is not None and self.writing[0] == kind:
            self.writing[1].cancel()

    def _next(self) -> None:
        if self.writing is not None or not self._writes:
            return
        kind, task, on_start, on_done, on_failed = self._writes.pop(0)
        self.writing = (kind, task)

        def finish(callback: Callable[[Any], None], value: Any) -> None:
            self.writing = None
            if not shiboken6.isValid(self.owner):
                return
            try:
                callback(value)
            finally:
                self._next()

        on_start()
        run_task(task, lambda r: finish(on_done, r), lambda e: finish(on_failed, e))
