"""One import, from a file to committed rows, in one transaction.

reader → runs gathered in memory → tree repair → price → totals → incidents → write once.

An importer yields runs and steps in file order. Steps are gathered per run; a run that has
not been seen for a while is taken as complete, analysed in memory (``runs``) and
written with its costs, totals and incidents, and its steps are never read back. A run
that gets more steps later in the file, or that is already in the database (a trace split
over files), is merged instead: its new steps are added, and the run is analysed again from
the database. Memory is bounded by the runs still open, whatever the file size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Generator, Iterable
from collections.abc import Set as AbstractSet
from contextlib import closing
from pathlib import Path
from typing import IO

from tracedesk.core import reader_process, tree
from tracedesk.core.analysis.cost import CostSource, explain_cost
from tracedesk.core.analysis.loops import Rules, detect
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.collector import collector_paused
from tracedesk.core.importers import FORMATS, describe
from tracedesk.core.importers import detect as detect_format
from tracedesk.core.importers.base import (
    ReadContext,
    TraceFormatError,
)
from tracedesk.core.importers.streams import open_decompressed
from tracedesk.core.model import (
    ImportResult,
    Incident,
    Run,
    Status,
    Step,
    decoded,
)
from tracedesk.core.runs import (
    ZERO,
    Analyser,
    ImportCancelled,
    OpenRun,
    fill_gaps,
    gathered,
    let_go,
)
from tracedesk.core.store import Store
from tracedesk.core.store.db import AlreadyImported
from tracedesk.core.store.rows import step_from_row
from tracedesk.core.text import plural
from tracedesk.core.tree import LOST_PARENT_KEY

HEAD_SIZE = 64 * 1024
# Files from this size on are read and mapped in a second process (it costs ~0.3 s to start).
PARALLEL_BYTES = 16 << 20
PROGRESS_EVERY = 2000  # records between progress reports
CHECK_PACKAGES = 50  # runs from worker processes between looks for a cancel
NAME, STATUS, REQUEST = 1, 2, 4  # what a run's record may leave to be derived from its steps

# (bytes read, total bytes); what it returns is ignored (a Qt signal's emit returns a bool)
Progress = Callable[[int, int], object]


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()  # into one buffer, reused


def _identity(store: Store, path: Path) -> str:
    """What tells a file imported before: its SHA-256; in a scratch database (``check``'s,
    thrown away after) its path, which spares reading the whole file once more."""
    return f"scratch:{path}" if store.scratch else file_sha256(path)


def import_file(
    store: Store,
    path: str | Path,
    format: str | None = None,
    skip_bad: bool = False,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    pricing: Pricing | None = None,
    rules: Rules | None = None,
    index_search: bool = False,
) -> ImportResult:
    """Import one trace file (optionally gzip-compressed) into the store, priced and checked.

    Raises TraceFormatError for bad input (the store is left unchanged), ImportCancelled
    when ``cancelled()`` turns true, and OSError when the file cannot be read.
    ``index_search`` adds the new steps to the full-text index in the import's
    transaction; by default they are indexed on the next search (bench/README.md).
    """
    path = Path(path)
    name = str(path)
    total = path.stat().st_size
    if total == 0:
        raise TraceFormatError(name, "file", "the file is empty")
    with path.open("rb") as raw:
        try:
            head = open_decompressed(raw).read(HEAD_SIZE)
        except (OSError, EOFError) as exc:
            raise TraceFormatError(name, "file", f"cannot decompress: {exc}") from None
    if format is None:
        format = detect_format(head)
        if format is None:
            raise TraceFormatError(
                name,
                "start of file",
                f"not a trace format tracedesk reads: {describe(head)}."
                f" tracedesk reads {', '.join(FORMATS)}",
            )
    elif format not in FORMATS:
        raise TraceFormatError(name, "--format", f"unknown format {format!r}")
    result = ImportResult(path=name, format=format)
    pricing, rules = pricing or Pricing.load(), rules or Rules.load()
    ranges = reader_process.parts(name, format, total) if total >= PARALLEL_BYTES else []
    try:
        if len(ranges) > 1:  # a worker process per part: read, gathered and analysed there
            with closing(reader_process.Workers(name, format, skip_bad, ranges, pricing,
                                                rules)) as workers:  # fmt: skip
                sha256 = _identity(store, path)  # while the workers read
                if store.find_import(sha256) is not None:
                    return ImportResult(path=name, format=format, already_imported=True)
                report = None if progress is None else (lambda done: progress(done, total))
                with closing(workers.packages(result, report)) as packages:
                    ingest(store, (), result, sha256, pricing, rules, cancelled, index_search,
                           packages)  # fmt: skip
            if progress is not None:
                progress(total, total)
        else:
            sha256 = _identity(store, path)
            if store.find_import(sha256) is not None:
                return ImportResult(path=name, format=format, already_imported=True)
            with (
                path.open("rb") as raw,
                closing(_records(raw, total, result, skip_bad, progress, pricing)) as records,
            ):
                ingest(store, records, result, sha256, pricing, rules, cancelled, index_search)
    except (OSError, EOFError) as exc:  # a corrupt gzip stream surfaces while reading
        raise TraceFormatError(name, "file", f"cannot read: {exc}") from None
    except AlreadyImported:
        result = ImportResult(path=name, format=format, already_imported=True)
    return result


def _records(
    raw: IO[bytes], total: int, result: ImportResult, skip_bad: bool, progress: Progress | None,
    pricing: Pricing,
) -> Generator[Run | Step, None, None]:  # fmt: skip
    """The file's records with progress reports; a big file is read, mapped and priced by a
    reader process. Refuses a file with no runs."""
    count = 0
    if total >= PARALLEL_BYTES and os.cpu_count() != 1:
        report = None if progress is None else (lambda done: progress(done, total))
        records = reader_process.records(result.path, result.format, skip_bad, result, report,
                                         pricing)  # fmt: skip
        for count, record in enumerate(records, 1):  # noqa: B007
            yield record
    else:
        ctx = ReadContext(path=result.path, result=result, skip_bad=skip_bad)
        for count, record in enumerate(FORMATS[result.format].read(open_decompressed(raw), ctx), 1):
            if progress is not None and count % PROGRESS_EVERY == 0:
                progress(raw.tell(), total)
            yield record
    if count == 0:
        raise TraceFormatError(result.path, "file", "contains no runs or steps")
    if progress is not None:
        progress(total, total)


def ingest(
    store: Store,
    records: Iterable[Run | Step],
    result: ImportResult,
    sha256: str,
    pricing: Pricing,
    rules: Rules,
    cancelled: Callable[[], bool] | None = None,
    index_search: bool = False,
    packages: Iterable[list] | None = None,
) -> ImportResult:
    """Write the runs and steps of one import in one transaction, analysed.

    ``packages``, instead of ``records``: runs that worker processes gathered and analysed
    (``reader_process.Workers.packages``), written as they come. Steps already in the
    database (same run and step id) are skipped, so importing the same runs again changes
    nothing. On any exception the transaction is rolled back and the exception propagates.
    """
    with collector_paused(), store.import_transaction(result, sha256) as import_id:
        # Runs stored under other prices or rules are brought up to date as well.
        stale_prices = store.get_meta(PRICING_META_KEY) != pricing.fingerprint
        stale_rules = stale_prices or store.get_meta(RULES_META_KEY) != rules.fingerprint
        older = store.run_ids() if stale_rules else []
        # A backlog (a database from before the index) is built on the next search,
        # with progress, not inside this import.
        index_search = index_search and store.search_index_current()
        writer = _Writer(store, result, import_id, pricing, rules)
        if packages is None:
            for run_id, entry in gathered(records, result, cancelled):
                writer.write(run_id, entry)
        else:
            for n, package in enumerate(packages):
                if n % CHECK_PACKAGES == 0 and cancelled is not None and cancelled():
                    raise ImportCancelled(result.path)
                writer.write_package(package)
            if cancelled is not None and cancelled():
                raise ImportCancelled(result.path)
            for warnings, _ in writer.pending.values():
                for warning in warnings:
                    result.warn(warning)
        if older:
            if stale_prices:
                apply_costs(store, pricing, older)
            apply_incidents(store, rules, older)
        store.set_meta(PRICING_META_KEY, pricing.fingerprint)
        store.set_meta(RULES_META_KEY, rules.fingerprint)
        result.runs = len(writer.written)
        if index_search:
            store.index_steps(in_transaction=True)
    return result


class _Writer(Analyser):
    """Analyses complete runs and writes them (or merges them into what is stored)."""

    def __init__(self, store: Store, result: ImportResult, import_id: int, pricing: Pricing,
                 rules: Rules):  # fmt: skip
        super().__init__(result, pricing, rules)
        self.store, self.import_id = store, import_id
        # The runs this import wrote, each with what its record left to be derived: when a
        # run comes again, that is derived again from all its steps, not kept from its first.
        self.written: dict[str, int] = {}
        # The warnings of runs a worker analysed from the edge of its part of the file: if
        # the run goes on in the next part, they are those of the merged run instead.
        self.pending: dict[str, tuple[list[str], set[str]]] = {}  # and the steps they are of

    def write(self, run_id: str, entry: OpenRun) -> None:
        if run_id in self.written or self.store.has_run(run_id):
            self._merge(run_id, entry)
            return
        derived = _derived(entry.run)
        run, steps, incidents = self.analysed(run_id, entry)
        try:
            self.store.insert_run(run, steps, incidents, self.import_id)
        except ValueError as exc:
            raise TraceFormatError(self.result.path, f"run {run_id}", str(exc)) from None
        self.result.steps += len(steps)
        self.written[run_id] = derived
        let_go(steps)

    def write_package(self, package: list) -> None:
        """A run that a worker process analysed: its record as given, its run row, step rows
        and incident rows, and its warnings when it was at the edge of the worker's part of
        the file (``reader_process.Workers.packages``)."""
        run_id, given, run_row, step_rows, incident_rows, edge_warnings = package
        if run_id in self.written or not self.store.insert_rows(
            run_row, step_rows, incident_rows, self.import_id
        ):
            # Cut in two: the warnings of the parts give way to those of the merged run.
            unwarned = self.pending.pop(run_id, ((), set()))[1]
            steps = {row[1]: step_from_row(row) for row in step_rows}
            if edge_warnings is not None:  # not those stored already: warned when they were
                unwarned |= steps.keys() - self.store.step_ids(run_id)
            self._merge(run_id, OpenRun(Run(*given), steps), unwarned)
            return
        self.result.steps += len(step_rows)
        self.written[run_id] = _derived(Run(*given))
        if edge_warnings is not None:
            self.pending[run_id] = edge_warnings, {row[1] for row in step_rows}

    def _merge(self, run_id: str, entry: OpenRun, unwarned: AbstractSet[str] = frozenset()) -> None:
        """Add a run's new steps to what the database holds, then analyse it whole again.
        ``unwarned``: steps whose missing parent was not warned of yet."""
        store = self.store
        derived = self.written.get(run_id)
        if derived is None:  # stored by an earlier import: what is stored wins
            if entry.run is not None:
                store.upsert_run_record(entry.run, self.import_id)
            else:
                store.ensure_run(run_id, self.result.format, self.import_id)
        added, skipped, duplicates, differing = store.insert_new_steps(
            entry.steps.values(), self.import_id
        )
        self.result.steps += added
        self.result.skipped += skipped
        if differing:
            self.result.warn(f"run {run_id}: {plural(differing, 'step')} already present with"
                             " different content; kept the first")  # fmt: skip
        for step_id in duplicates:
            self.result.warn(f"run {run_id}: duplicate step id {step_id!r}; kept the first")
        run = store.get_run(run_id)
        assert run is not None
        if derived is not None:  # written by this import: derived again from all its steps
            if derived & NAME:
                run.name = ""
            if derived & STATUS:
                run.status = Status.UNSET
            if derived & REQUEST:
                run.request = None
            if entry.run is not None:
                fill_gaps(run, entry.run)
        self.written[run_id] = _derived(run) if derived is not None else 0
        for step in self.reanalyse(run):
            if (
                step.id in unwarned
                and step.parent_id is None
                and LOST_PARENT_KEY in step.attributes
            ):
                lost = decoded(step.attributes)[LOST_PARENT_KEY]
                self._warn_detached(run_id, step.id, "has a missing parent", lost)

    def reanalyse(self, run: Run, kept: list[Step] | None = None) -> list[Step]:
        """Analyse a stored run whole again and store the result (``run`` carries what is
        known of the run itself: name, request, attributes). Steps detached for a parent
        that has arrived since get it back. Returns the run's steps, analysed.

        ``kept``: every step the store holds of the run, as stored and priced under these
        prices (the live writer keeps them as they arrive): they are not read back, and
        only the steps whose place in the tree changed are written again."""
        if kept is None:
            steps = self.store.steps(run.id)
            tree.reattach(steps)
            incidents = self._analyse(run, steps)
            self.store.update_run(run, steps, incidents)
            return steps
        steps = list(kept)
        stored = {s.id: (s.parent_id, s.depth) for s in steps}
        tree.reattach(steps)
        incidents = self._analyse(run, steps, priced=True)
        changed = [s for s in steps if (s.parent_id, s.depth) != stored[s.id]]
        self.store.update_run(run, steps, incidents, changed)
        return steps


def reanalyse(
    store: Store, run: Run, result: ImportResult, import_id: int, pricing: Pricing, rules: Rules,
    kept: list[Step] | None = None,
) -> list[Step]:  # fmt: skip
    """Analyse a stored run again (tree, prices, totals, incidents) from its stored steps,
    or from ``kept`` (see ``_Writer.reanalyse``), and write the result, inside a
    transaction; warnings go to ``result``. Returns the run's steps, analysed."""
    return _Writer(store, result, import_id, pricing, rules).reanalyse(run, kept)


def _derived(record: Run | None) -> int:
    """What a run's record leaves to be derived from its steps (NAME, STATUS, REQUEST)."""
    if record is None:
        return NAME | STATUS | REQUEST
    return ((NAME if not record.name else 0) | (STATUS if record.status == Status.UNSET else 0)
            | (REQUEST if record.request is None else 0))  # fmt: skip


# -- stored runs under new prices or rules ---------------------------------------------

PRICING_META_KEY = "pricing_fingerprint"


def apply_costs(store: Store, pricing: Pricing, run_ids: Iterable[str] | None = None) -> None:
    """Price the steps of these runs (all when None) and store step and run costs.

    Call inside a transaction (the importer does); see ``refresh_costs`` otherwise.
    """
    step_rows: list[tuple] = []
    run_rows: list[tuple] = []
    for run_id in store.run_ids() if run_ids is None else run_ids:
        total, priced, unpriced = ZERO, False, 0
        for step in store.iter_steps(run_id, payloads=False):
            step_cost = explain_cost(step, pricing)
            cost, source = step_cost.cost, step_cost.source
            step_rows.append((cost, source, step_cost.parts(), run_id, step.id))
            if cost is not None:
                total += cost
                priced = True
            unpriced += source == CostSource.UNKNOWN_MODEL
        run_rows.append((total if priced else None, unpriced, run_id))
    store.write_costs(step_rows, run_rows)
    if run_ids is None:
        store.set_meta(PRICING_META_KEY, pricing.fingerprint)


def refresh_costs(store: Store, pricing: Pricing) -> bool:
    """Re-price every run if the pricing changed since it was last applied."""
    if store.get_meta(PRICING_META_KEY) == pricing.fingerprint:
        return False
    with store.transaction():
        apply_costs(store, pricing)
    return True


RULES_META_KEY = "loop_rules_fingerprint"


def apply_incidents(store: Store, rules: Rules, run_ids: Iterable[str] | None = None) -> None:
    """Detect and store the incidents of these runs (all when None), inside a transaction."""
    ids = store.run_ids() if run_ids is None else list(run_ids)
    incidents: list[Incident] = []
    for run_id in ids:
        run = store.get_run(run_id)
        if run is not None:
            incidents.extend(detect(run, store.steps(run_id), rules))
    store.replace_incidents(ids, incidents)
    if run_ids is None:
        store.set_meta(RULES_META_KEY, rules.fingerprint)


def refresh_incidents(store: Store, rules: Rules) -> bool:
    """Recompute every run's incidents if the rules changed since they were last applied."""
    if store.get_meta(RULES_META_KEY) == rules.fingerprint:
        return False
    with store.transaction():
        apply_incidents(store, rules)
    return True
