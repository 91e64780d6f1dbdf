"""Pausing Python's cycle collector around work that builds many objects and no cycles.

The collector runs after every 700 new objects and, every so often, walks every live
object. An import holds up to millions of step objects, and the runs library builds 20k
runs at once: the collector's passes cost a sixth of an import and 30 % of opening a 20k-run
library (measured with bench/). Nothing in those paths forms reference cycles (a test
imports every fixture with the collector off and fails on any), and the collector is back
on when the last pause ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_pauses = 0  # pauses running now, in any thread, and whether the first turned it off
_turned_off = False
_lock = threading.Lock()


@contextmanager
def collector_paused() -> Iterator[None]:
    global _pauses, _turned_off
    with _lock:
        if _pauses == 0:
            _turned_off = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _turned_off:
                gc.enable()


def freeze_alive() -> None:
    """Put every object alive now out of the cycle collector's reach (``gc.freeze``), so
    that its passes stop walking big long-lived results: the window's 20k runs and a run's
    100k step rows. After a library was read, the next passes took 20-30 ms and a full one
    150 ms of the UI thread. Freed objects are still freed (by reference counting); the
    price is that a reference cycle alive now and dropped later stays in memory."""
    gc.freeze()
