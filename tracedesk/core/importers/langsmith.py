"""LangSmith runs: an ingest batch ``{post, patch}``, a JSON array of runs, or JSON Lines.

A LangSmith "run" is one step; runs sharing a ``trace_id`` make one tracedesk run. The
ingest batch splits a run's fields between its post and its patch, so they are merged by
``id`` (that form is small by nature; arrays and JSON Lines stream).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from tracedesk.core.importers.base import (
    RECORD_ERRORS,
    ReadContext,
    as_cost,
    as_int,
    checked,
    iter_records,
    parse_time,
    root_run,
)
from tracedesk.core.importers.semconv import move_rollup_usage
from tracedesk.core.model import Run, Status, Step, StepKind

NAME = "langsmith"
RUN_TYPES = {
    "llm": StepKind.LLM,
    "chain": StepKind.CHAIN,
    "tool": StepKind.TOOL,
    "retriever": StepKind.RETRIEVER,
    "embedding": StepKind.EMBEDDING,
    "prompt": StepKind.CHAIN,
    "parser": StepKind.CHAIN,
}
# Fields mapped onto the Step; everything else is kept in its attributes.
MAPPED = frozenset({
    "id", "trace_id", "parent_run_id", "name", "run_type", "start_time", "end_time", "error",
    "status", "inputs", "outputs", "prompt_tokens", "completion_tokens", "total_cost",
})  # fmt: skip


def sniff(head: bytes) -> float:
    if b'"run_type"' in head or b'"dotted_order"' in head:
        return 0.8
    return 0.0


def read(stream: IO[bytes], ctx: ReadContext) -> Iterator[Run | Step]:
    for where, record in iter_records(stream, ctx):
        if isinstance(record, dict) and ("post" in record or "patch" in record):
            merged: dict[str, dict[str, Any]] = {}
            for part in ("post", "patch"):
                for index, run in enumerate(record.get(part) or ()):
                    run_id = _run_id(run) if isinstance(run, dict) else None
                    if run_id is None:
                        ctx.bad(f"{where} {part}[{index}]", "no 'id' and no 'dotted_order'")
                        continue
                    merged.setdefault(run_id, {"id": run_id}).update(
                        {k: v for k, v in run.items() if v is not None}
                    )
            runs = [(f"{where} run {run_id}", run) for run_id, run in merged.items()]
        elif isinstance(record, dict) and isinstance(record.get("runs"), list):
            runs = [(f"{where} run {i + 1}", run) for i, run in enumerate(record["runs"])]
        else:
            runs = [(where, record)]
        for run_where, run in runs:
            try:
                yield from _run(run)
            except RECORD_ERRORS as exc:
                problem = (
                    f"missing required field {exc.args[0]!r}"
                    if isinstance(exc, KeyError)
                    else str(exc)
                )
                ctx.bad(run_where, problem)


def _run_id(run: dict[str, Any]) -> str | None:
    """The run's id; the JS SDK leaves it out of a PATCH body (it is in the URL), but the
    last segment of ``dotted_order`` (``<time>Z<id>``) names it too."""
    if run.get("id"):
        return str(run["id"])
    dotted = run.get("dotted_order")
    if isinstance(dotted, str) and "Z" in dotted:
        return dotted.rsplit(".", 1)[-1].split("Z", 1)[1] or None
    return None


def _trace_id(run: dict[str, Any]) -> str:
    if run.get("trace_id"):
        return str(run["trace_id"])
    dotted = run.get("dotted_order")
    if isinstance(dotted, str) and "Z" in dotted:
        return dotted.split(".")[0].split("Z", 1)[1]  # the root run's id
    if run.get("parent_run_id"):
        raise ValueError("run has a parent but neither 'trace_id' nor 'dotted_order'")
    return str(run["id"])


def _usage(run: dict[str, Any]) -> dict[str, Any]:
    for holder in (run.get("outputs"), (run.get("extra") or {}).get("metadata")):
        if isinstance(holder, dict) and isinstance(holder.get("usage_metadata"), dict):
            return holder["usage_metadata"]
    return {}


def _model(run: dict[str, Any]) -> str | None:
    outputs = run.get("outputs")
    if isinstance(outputs, dict) and isinstance(outputs.get("model"), str):
        return outputs["model"]  # the response's model: a dated snapshot, best for pricing
    extra = run.get("extra") or {}
    metadata = extra.get("metadata") or {}
    invocation = extra.get("invocation_params") or {}
    return metadata.get("ls_model_name") or invocation.get("model") or invocation.get("model_name")


def _run(run: dict[str, Any]) -> Iterator[Run | Step]:
    if not isinstance(run, dict):
        raise ValueError("expected a JSON object")
    run_id = run["id"]
    kind = RUN_TYPES.get(run.get("run_type", ""), StepKind.OTHER)
    error = run.get("error")
    if error or run.get("status") == "error":
        status = Status.ERROR
    elif run.get("end_time") or run.get("status") == "success":
        status = Status.OK
    else:
        status = Status.UNSET
    usage = _usage(run)
    step = Step(
        id=str(run_id),
        run_id=_trace_id(run),
        parent_id=str(run["parent_run_id"]) if run.get("parent_run_id") else None,
        kind=kind,
        name=run.get("name") or "",
        start_ns=parse_time(run.get("start_time")),
        end_ns=parse_time(run.get("end_time")),
        status=status,
        error=str(error) if error else None,
        input=run.get("inputs"),
        output=run.get("outputs"),
        attributes={k: v for k, v in run.items() if k not in MAPPED},
    )
    if kind in (StepKind.LLM, StepKind.EMBEDDING):
        metadata = (run.get("extra") or {}).get("metadata") or {}
        step.model = _model(run)
        step.provider = metadata.get("ls_provider")
        step.input_tokens = as_int(usage.get("input_tokens", run.get("prompt_tokens")))
        step.output_tokens = as_int(usage.get("output_tokens", run.get("completion_tokens")))
        # LangChain's usage_metadata counts cache reads and writes inside input_tokens.
        input_details = usage.get("input_token_details") or {}
        step.cached_input_tokens = as_int(input_details.get("cache_read"))
        step.cache_creation_tokens = as_int(input_details.get("cache_creation"))
        step.reasoning_tokens = as_int((usage.get("output_token_details") or {}).get("reasoning"))
        # LangSmith rolls costs up into parent runs; only a model run's cost is its own.
        step.reported_cost = as_cost(usage.get("total_cost", run.get("total_cost")))
    elif run.get("total_cost") is not None:
        step.attributes["tracedesk.rollup_usage"] = {"reported_cost": str(run["total_cost"])}
    if kind == StepKind.TOOL:
        step.tool_name = step.name
        step.tool_args = step.input
    move_rollup_usage(step)
    if step.parent_id is None:
        session = run.get("thread_id") or run.get("session_id")
        yield root_run(
            step, NAME, session, {k: run[k] for k in ("session_name", "tags") if run.get(k)}
        )
    yield checked(step)
