"""Live capture, the database side: what the receiver queued, written by one writer.

``LiveIngest`` writes a batch of received runs and steps in one transaction: new steps are
priced and inserted (a step already stored, such as a span re-sent by a retrying exporter,
is left as it is), and the run's counts, tokens and cost are summed by SQL so the library
shows it growing. Once a run has been quiet for ``QUIET_S`` seconds it is analysed whole,
exactly as a file import analyses it (tree, prices, totals, incidents), and again whenever
more of its spans arrive. It holds no thread and no connection: the headless server
(``LiveServer``) calls it from its writer thread, the GUI from its single-writer job runner.

The steps written are kept in memory (the most recent ``KEPT_STEPS``), so a quiet run is
analysed from them rather than read back with its payloads, and only the steps whose place
in the tree changed are written again. A run whose kept steps are not exactly what the
store holds (evicted, written by someone else, a span re-sent after eviction) is read back.

Every live session is one row of ``imports`` (path ``live capture on HOST:PORT``), whose
counts grow as spans arrive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from tracedesk.core.analysis.cost import price
from tracedesk.core.analysis.loops import Rules
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.collector import collector_paused
from tracedesk.core.ingest import PRICING_META_KEY, RULES_META_KEY, reanalyse
from tracedesk.core.model import ImportResult, Run, Step
from tracedesk.core.receiver import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_BODY_BYTES,
    Receiver,
    SpanQueue,
)
from tracedesk.core.runs import fill_gaps
from tracedesk.core.store import Store

QUIET_S = 3.0  # a run with no new spans for this long is analysed
KEPT_RUN_RECORDS = 10_000  # root-span run records kept for re-analysis (most recent)
# Steps kept for analysis from memory, the most recently written runs' first: at 20k spans/s
# that is five seconds of arrivals, more than the runs still waiting for their quiet time.
KEPT_STEPS = 100_000
MAX_DEPTH_WALK = 64  # parents followed for a new step's depth before leaving it to the analysis
WRITE_SPANS = 20_000  # spans written per transaction at most
SOURCE_FORMAT = "otlp"


@dataclasses.dataclass
class Written:
    """What one write or settle did."""

    steps: int = 0  # steps added
    skipped: int = 0  # steps already stored (re-sent)
    runs: set[str] = dataclasses.field(default_factory=set)  # runs that changed

    def __bool__(self) -> bool:
        return bool(self.runs)


@dataclasses.dataclass
class _Kept:
    """A run's steps as stored, kept since they were written (by step id)."""

    steps: dict[str, Step] = dataclasses.field(default_factory=dict)
    exact: bool = True  # False once the store kept another version of a step given here


class LiveIngest:
    """Writes received runs and steps, and analyses each run once it is quiet."""

    def __init__(self, source: str, pricing: Pricing, rules: Rules, quiet_s: float = QUIET_S,
                 clock: Callable[[], float] = time.monotonic):  # fmt: skip
        self.pricing, self.rules, self.quiet_s, self.clock = pricing, rules, quiet_s, clock
        self.result = ImportResult(path=source, format=SOURCE_FORMAT)
        self._sha = f"live:{uuid.uuid4().hex}"
        self.import_id: int | None = None
        self.dirty: dict[str, float] = {}  # run id → when its last new span was written
        self.records: OrderedDict[str, Run] = OrderedDict()  # the run as its root span says
        self.runs_seen: set[str] = set()
        self.kept: OrderedDict[str, _Kept] = OrderedDict()  # by run, least recently written first
        self.kept_steps = 0
        self.settled = 0  # analyses done
        self.read_back = 0  # of which from the steps read back from the store

    def write(self, store: Store, records: Iterable[Run | Step]) -> Written:
        """Write one batch of received records in one transaction."""
        done = Written()
        runs: dict[str, Run | None] = {}
        steps: dict[str, dict[str, Step]] = {}  # by run, by id
        received = 0
        for record in records:
            if type(record) is Step:
                received += 1
                steps.setdefault(record.run_id, {}).setdefault(record.id, record)
                runs.setdefault(record.run_id, None)
            else:
                assert isinstance(record, Run)
                known = runs.get(record.id)
                runs[record.id] = record if known is None else fill_gaps(known, record)
        if not runs:
            return done
        # Steps kept are stored already (re-sent): only the others are priced and inserted.
        new: dict[str, list[Step]] = {}
        for run_id, of_run in steps.items():
            kept = self.kept.get(run_id)
            fresh = [s for s in of_run.values() if kept is None or s.id not in kept.steps]
            for step in fresh:
                price(step, self.pricing)
            new[run_id] = fresh
        first = self.import_id is None
        try:
            self._write(store, runs, new, received, done)
        except BaseException:  # rolled back: what was kept of these runs is not stored
            for run_id in new:
                self._forget(run_id)
            if first:  # nor the session's imports row, made in that transaction
                self.import_id = self.result.import_id = None
            raise
        self.runs_seen.update(runs)
        self.result.steps += done.steps
        done.skipped = received - done.steps  # re-sent, or sent twice in this batch
        self.result.skipped += done.skipped
        now = self.clock()
        for run_id in done.runs:
            self.dirty[run_id] = now
        return done

    def _write(self, store: Store, runs: dict[str, Run | None], new: dict[str, list[Step]],
               received: int, done: Written) -> None:  # fmt: skip
        with collector_paused(), store.transaction():
            import_id = self._import_id(store)
            for run_id, run in runs.items():
                if run is None:
                    store.ensure_run(run_id, SOURCE_FORMAT, import_id)
                else:
                    store.upsert_run_record(run, import_id)
                    kept = self.records.pop(run_id, None)
                    self.records[run_id] = run if kept is None else fill_gaps(kept, run)
                given = new.get(run_id, [])
                if given:
                    self._keep(run_id, given)
                added = store.insert_steps_once(given, import_id) if given else 0
                if added < len(given):  # the store had some already: not the ones kept
                    self.kept[run_id].exact = False
                if added:
                    done.runs.add(run_id)
                done.steps += added
            while len(self.records) > KEPT_RUN_RECORDS:
                self.records.popitem(last=False)
            store.update_running_totals(done.runs)
            store.set_import_counts(import_id, len(self.runs_seen | runs.keys()),
                                    self.result.steps + done.steps,
                                    self.result.skipped + received - done.steps)  # fmt: skip
        self._evict()

    def _keep(self, run_id: str, steps: list[Step]) -> None:
        """Keep a run's new steps (before they are inserted: their depth where their
        ancestors are known, so that the analysis seldom has to write them again)."""
        kept = self.kept.pop(run_id, None) or _Kept()
        self.kept[run_id] = kept  # the most recently written last
        for step in steps:
            kept.steps[step.id] = step
        self.kept_steps += len(steps)
        for step in steps:
            step.depth = _depth(step, kept.steps)

    def _evict(self) -> None:
        """Forget the least recently written runs' steps beyond KEPT_STEPS (such a run is
        read back when it is analysed)."""
        while self.kept_steps > KEPT_STEPS and len(self.kept) > 1:
            self._forget(next(iter(self.kept)))

    def _forget(self, run_id: str) -> None:
        kept = self.kept.pop(run_id, None)
        if kept is not None:
            self.kept_steps -= len(kept.steps)

    def _import_id(self, store: Store) -> int:
        if self.import_id is None:
            self.import_id = store.add_import(self.result.path, self._sha, SOURCE_FORMAT)
            self.result.import_id = self.import_id
            # A database without analysed runs takes this pricing and these rules as its own.
            for key, value in ((PRICING_META_KEY, self.pricing.fingerprint),
                               (RULES_META_KEY, self.rules.fingerprint)):  # fmt: skip
                if store.get_meta(key) is None:
                    store.set_meta(key, value)
        return self.import_id

    def due(self, force: bool = False) -> list[str]:
        """The runs to analyse now: quiet for ``quiet_s`` (every changed run when forced)."""
        if force:
            return list(self.dirty)
        now = self.clock()
        return [r for r, last in self.dirty.items() if now - last >= self.quiet_s]

    def settle(self, store: Store, force: bool = False) -> Written:
        """Analyse the runs that are due, as a file import would (in one transaction)."""
        done = Written()
        due = self.due(force)
        if not due:
            return done
        assert self.import_id is not None
        with collector_paused(), store.transaction():
            for run_id in due:
                record = self.records.get(run_id)
                run = (
                    dataclasses.replace(record, attributes=dict(record.attributes))
                    if record is not None
                    else store.get_run(run_id)
                )
                if run is not None:
                    self._analyse(store, run)
                done.runs.add(run_id)
        for run_id in due:
            del self.dirty[run_id]
        self.settled += len(due)
        return done

    def _analyse(self, store: Store, run: Run) -> None:
        """Analyse a run from its kept steps when they are exactly what the store holds,
        else from the store (and keep what was read)."""
        assert self.import_id is not None
        kept = self.kept.get(run.id)
        exact = (kept is not None and kept.exact
                 and store.step_ids(run.id) == kept.steps.keys())  # fmt: skip
        steps = reanalyse(store, run, self.result, self.import_id, self.pricing, self.rules,
                          list(kept.steps.values()) if exact and kept else None)  # fmt: skip
        if not exact:
            self.read_back += 1
            self._forget(run.id)
            self.kept[run.id] = _Kept({s.id: s for s in steps})
            self.kept_steps += len(steps)
            self._evict()


def _depth(step: Step, steps: dict[str, Step]) -> int:
    """A step's depth through the parents among ``steps``; 0 when one is missing (the
    analysis repairs the tree)."""
    depth, parent = 0, step.parent_id
    while parent is not None:
        above = steps.get(parent)
        if above is None or depth >= MAX_DEPTH_WALK:  # missing, a cycle, or very deep
            return 0
        depth, parent = depth + 1, above.parent_id
    return depth


class LiveServer:
    """The receiver with a writer thread of its own over one database (``tracedesk serve``,
    the tests and the benchmark). ``stop`` returns once every acknowledged span is written
    and every changed run analysed."""

    def __init__(self, db_path: Path | str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 pricing: Pricing | None = None, rules: Rules | None = None,
                 quiet_s: float = QUIET_S, queue_spans: int | None = None,
                 on_written: Callable[[Written], None] | None = None,
                 on_settled: Callable[[Store, Written], None] | None = None,
                 max_body: int | None = None):  # fmt: skip
        self.db_path = Path(db_path)
        self.queue = SpanQueue() if queue_spans is None else SpanQueue(queue_spans)
        self.receiver = Receiver(
            self.queue, host, port, max_body=MAX_BODY_BYTES if max_body is None else max_body
        )
        self.ingest = LiveIngest(f"live capture on {self.receiver.address}",
                                 pricing or Pricing.load(), rules or Rules.load(), quiet_s)  # fmt: skip
        self.on_written, self.on_settled = on_written, on_settled
        self.errors: list[str] = []  # writes that failed (the database said no)
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self.written = 0  # steps written

    @property
    def address(self) -> str:
        return self.receiver.address

    @property
    def url(self) -> str:
        return self.receiver.url

    def start(self) -> LiveServer:
        self.start_writer()
        self.receiver.start()
        return self

    def start_writer(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="otlp-writer", daemon=True)
        self._writer.start()

    def stop(self) -> None:
        self.receiver.stop()  # nothing more is acknowledged
        self._stopping.set()
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_loop(self) -> None:
        with contextlib.suppress(Exception):  # else the first spans priced will say why
            self.ingest.pricing.warm()  # now, not while the first spans wait
        with Store(self.db_path) as store:
            while True:
                stopping = self._stopping.is_set()
                wait = None if stopping else min(0.2, self.ingest.quiet_s)
                records = self.queue.take(WRITE_SPANS, timeout=wait)
                try:
                    if records:
                        self._write(store, records)
                    # Once stopping and all that was acknowledged is written, analyse the rest.
                    self._settle(store, force=stopping and not records)
                except Exception as exc:  # the database refused: say so, keep serving
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                if stopping and not records:
                    return

    def _write(self, store: Store, records: list[Run | Step]) -> None:
        written = self.ingest.write(store, records)
        self.written += written.steps
        if self.on_written is not None and written:
            self.on_written(written)

    def _settle(self, store: Store, force: bool = False) -> None:
        settled = self.ingest.settle(store, force)
        if self.on_settled is not None and settled:
            self.on_settled(store, settled)
