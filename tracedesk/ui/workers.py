"""Long work off the UI thread: a QThreadPool task whose result, error and progress come
back to the main thread as signals. One writer at a time: the window runs one import."""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal


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
