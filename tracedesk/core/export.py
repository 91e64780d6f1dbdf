"""Writing data out of the store: runs as tracedesk JSON Lines (lossless)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from tracedesk.core.importers.native import FORMAT_VERSION, NAME
from tracedesk.core.model import Run, Step
from tracedesk.core.store import Store

# Derived by the store on import, so not written out.
_RUN_SKIP = frozenset({"step_count", "error_count", "input_tokens", "output_tokens",
                       "cached_input_tokens", "reasoning_tokens", "reported_cost"})  # fmt: skip
_STEP_SKIP = frozenset({"depth"})


def _record(kind: str, obj: Run | Step, skip: frozenset[str]) -> dict[str, Any]:
    record: dict[str, Any] = {"type": kind}
    for name in obj.__dataclass_fields__:
        value = getattr(obj, name)
        if name in skip or value is None or value == {} or value == "":
            continue
        record[name] = str(value) if name == "reported_cost" else value
    return record


def native_lines(runs: Iterable[tuple[Run, Iterable[Step]]]) -> Iterator[bytes]:
    """The JSON Lines of runs and their steps, header first."""
    yield orjson.dumps({"type": "header", "format": NAME, "version": FORMAT_VERSION}) + b"\n"
    for run, steps in runs:
        yield orjson.dumps(_record("run", run, _RUN_SKIP)) + b"\n"
        for step in steps:
            yield orjson.dumps(_record("step", step, _STEP_SKIP)) + b"\n"


def write_native(store: Store, run_ids: Iterable[str], out: IO[bytes]) -> int:
    """Write runs (with all their steps) as tracedesk JSONL; returns the number of runs."""
    runs = [store.find_run(run_id) for run_id in run_ids]
    out.writelines(native_lines((run, store.iter_steps(run.id)) for run in runs))
    return len(runs)
