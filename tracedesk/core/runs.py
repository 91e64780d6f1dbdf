"""Runs gathered from an importer's records and analysed in memory, for an import
(``ingest``) and for each worker process that reads a part of a file (``reader_process``).

A run that has not been seen for ``QUIET_RECORDS`` records is taken as complete; its tree
is repaired, its steps priced, its totals summed and its incidents found, all in memory.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from tracedesk.core import tree
from tracedesk.core.analysis.cost import CostSource, price
from tracedesk.core.analysis.loops import Rules, detect
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.importers.base import INVALID_DATE
from tracedesk.core.model import (
    ImportResult,
    Incident,
    Run,
    Status,
    Step,
    decoded,
    request_text,
    severity_rank,
)

QUIET_RECORDS = 20_000  # a run not seen for this many records is complete
CHECK_EVERY = 1000  # records between looks for complete runs (and for a cancel)
COLLECT_EVERY = 250_000  # records between passes of the (paused) cycle collector
ZERO = Decimal(0)


class ImportCancelled(Exception):
    """The user cancelled an import; the database was rolled back."""


@dataclass
class OpenRun:
    """A run being gathered: its record, its steps by id, and where in the records it was
    first and last seen."""

    run: Run | None = None
    steps: dict[str, Step] = field(default_factory=dict)
    last_seen: int = 0
    first_seen: int = 0
    at_end: bool = False  # still open when the records ended


def gathered(
    records: Iterable[Run | Step], result: ImportResult, cancelled: Callable[[], bool] | None
) -> Iterator[tuple[str, OpenRun]]:
    """The runs of the records, each with its steps, as each completes: when it has not been
    seen for QUIET_RECORDS records, or at the end. A run seen again later comes again."""
    open_runs: dict[str, OpenRun] = {}
    record: Run | Step | None
    entry: OpenRun | None
    for n, record in enumerate(records):
        if n % CHECK_EVERY == 0:
            if cancelled is not None and cancelled():
                raise ImportCancelled(result.path)
            quiet = [k for k, o in open_runs.items() if o.last_seen < n - QUIET_RECORDS]
            for run_id in quiet:
                yield run_id, open_runs.pop(run_id)
            if n and n % COLLECT_EVERY == 0:
                gc.collect()  # cycles a reader or the UI thread left stay bounded
        run_id = record.run_id if isinstance(record, Step) else record.id
        entry = open_runs.get(run_id)
        if entry is None:
            entry = open_runs[run_id] = OpenRun(first_seen=n)
        entry.last_seen = n
        if isinstance(record, Step):
            if record.id in entry.steps:
                result.warn(f"run {run_id}: duplicate step id {record.id!r}; kept the first")
            else:
                entry.steps[record.id] = record
        else:
            entry.run = record if entry.run is None else fill_gaps(entry.run, record)
    if cancelled is not None and cancelled():
        raise ImportCancelled(result.path)
    # Each run let go once written: what is still alive when the collector resumes, it
    # walks at once (100k steps of one run held the UI up for 60-140 ms).
    entry = record = None
    while open_runs:
        run_id = next(iter(open_runs))
        entry = open_runs.pop(run_id)
        entry.at_end = True
        yield run_id, entry


class Analyser:
    """Prices, totals and checks complete runs in memory; warnings go to ``result``."""

    def __init__(self, result: ImportResult, pricing: Pricing, rules: Rules):
        self.result, self.pricing, self.rules = result, pricing, rules

    def analysed(self, run_id: str, entry: OpenRun) -> tuple[Run, list[Step], list[Incident]]:
        """A gathered run priced, totalled and checked: the run, its steps in start order
        and its incidents (``entry`` gives its steps up)."""
        run = entry.run or Run(id=run_id, source_format=self.result.format)
        steps = list(entry.steps.values())
        entry.steps.clear()  # the list holds them now: whoever writes them lets them go
        for step in steps:
            if step.cost_source is None:  # else priced by the reader process
                price(step, self.pricing)
        return run, steps, self._analyse(run, steps, priced=True)

    def _analyse(self, run: Run, steps: list[Step], priced: bool = False) -> list[Incident]:
        """Repair the tree, price the steps (unless ``priced``), total the run and find its
        incidents, in memory; the steps end up in start order."""
        for step, reason, lost in tree.repair(steps):
            self._warn_detached(run.id, step.id, reason, lost)
        steps.sort(key=lambda s: (s.start_ns is None, s.start_ns or 0))
        self._warn_invalid_dates(run.id, "run", run)
        for step in steps:
            if not priced:
                price(step, self.pricing)
            if INVALID_DATE in step.attributes:  # a key, or a substring of encoded attributes
                self._warn_invalid_dates(run.id, f"step {step.id!r}", step)
            if (
                step.start_ns is not None
                and step.end_ns is not None
                and step.end_ns < step.start_ns
            ):
                self.result.warn(f"run {run.id}: step {step.id!r} ends before it starts"
                                 f" ({(step.start_ns - step.end_ns) / 1e9:g} s earlier)")  # fmt: skip
        _total(run, steps)
        incidents = detect(run, steps, self.rules)
        run.incident_count = len(incidents)
        run.worst_severity = max((i.severity for i in incidents), key=severity_rank, default=None)
        run.wasted_tokens = sum(i.wasted_tokens for i in incidents)
        run.wasted_cost = sum((i.wasted_cost for i in incidents), ZERO) if incidents else None
        run.wasted_ns = sum(i.wasted_ns for i in incidents)
        run.wasted_unpriced = sum(i.wasted_unpriced for i in incidents)
        return incidents

    def _warn_detached(self, run_id: str, step_id: str, reason: str, lost: str) -> None:
        self.result.warn(f"run {run_id}: step {step_id!r} {reason} ({lost!r}); attached to the"
                         " run root")  # fmt: skip

    def _warn_invalid_dates(self, run_id: str, what: str, record: Run | Step) -> None:
        if INVALID_DATE in record.attributes:
            dates = decoded(record.attributes).get(INVALID_DATE)
            if dates:
                self.result.warn(f"run {run_id}: {what} has times that are not valid dates"
                                 f" ({', '.join(map(repr, dates))}); left unknown")  # fmt: skip


def let_go(items: list) -> None:
    """Free a list's items a slice at a time. Freeing is one C call that holds the
    interpreter: the 100k steps of one run at once held the window up for 60 ms."""
    while items:
        del items[-2000:]


def fill_gaps(known: Run, later: Run) -> Run:
    """What is known wins; a later record of the same run only fills gaps (a trace split
    over several lines or files names its run more than once)."""
    known.name = known.name or later.name
    known.request = known.request if known.request is not None else later.request
    known.session_id = known.session_id or later.session_id
    known.start_ns = known.start_ns if known.start_ns is not None else later.start_ns
    known.end_ns = known.end_ns if known.end_ns is not None else later.end_ns
    if known.status == Status.UNSET:
        known.status = later.status
    known.attributes = known.attributes or later.attributes
    return known


def _total(run: Run, steps: list[Step]) -> None:
    """The run's totals from its steps (in start order), and its name and request when the
    source gave none."""
    run.step_count = len(steps)
    run.error_count = [s.status for s in steps].count(Status.ERROR)
    # Field by field: compiled (setup.py), a Step's fields are read without a lookup.
    input_tokens = output_tokens = cached = reasoning = written = hour = 0
    for s in steps:
        input_tokens += s.input_tokens or 0
        output_tokens += s.output_tokens or 0
        cached += s.cached_input_tokens or 0
        reasoning += s.reasoning_tokens or 0
        written += s.cache_creation_tokens or 0
        hour += s.cache_write_1h_tokens or 0
    run.input_tokens, run.output_tokens = input_tokens, output_tokens
    run.cached_input_tokens, run.reasoning_tokens = cached, reasoning
    run.cache_creation_tokens, run.cache_write_1h_tokens = written, hour
    reported = [s.reported_cost for s in steps if s.reported_cost is not None]
    run.reported_cost = sum(reported, ZERO) if reported else None
    costs = [s.cost for s in steps if s.cost is not None]
    run.cost = sum(costs, ZERO) if costs else None
    run.unpriced_steps = sum(s.cost_source == CostSource.UNKNOWN_MODEL for s in steps)
    starts = [s.start_ns for s in steps if s.start_ns is not None]
    ends = [s.end_ns if s.end_ns is not None else s.start_ns for s in steps]
    run.start_ns = min(starts, default=run.start_ns)
    run.end_ns = max((e for e in ends if e is not None), default=run.end_ns)
    roots = [s for s in steps if s.parent_id is None]
    if run.status == Status.UNSET and steps:
        failed = any(s.status == Status.ERROR for s in roots)
        run.status = Status.ERROR if failed else Status.OK
    if not run.name and roots:
        run.name = roots[0].name
    if run.request is None:
        for step in steps:
            text = request_text(decoded(step.input)) if step.input is not None else None
            if text:
                run.request = text
                break
