"""LangSmith runs: an ingest batch ``{post, patch}``, multipart ingest bodies, a JSON array
of runs, or JSON Lines.

A LangSmith "run" is one step; runs sharing a ``trace_id`` make one tracedesk run. The
ingest batch splits a run's fields between its post and its patch, so they are merged by
``id`` (that form is small by nature; arrays and JSON Lines stream). The Python SDK sends
the same operations as ``POST /runs/multipart`` bodies: one part per operation
(``post.<id>``, ``patch.<id>``) and one per large field (``post.<id>.inputs``, ``.outputs``,
``.events``, ``.extra``, ``.error`` …); bodies saved one after another in a file are read
as one batch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Any

import orjson

from tracedesk.core.importers.base import (
    RECORD_ERRORS,
    ReadContext,
    TraceFormatError,
    as_cost,
    as_int,
    as_text,
    checked,
    iter_records,
    parse_time,
    root_run,
)
from tracedesk.core.importers.semconv import move_rollup_usage
from tracedesk.core.model import Run, Status, Step, StepKind

THREAD_KEYS = ("session_id", "thread_id", "conversation_id")
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
# usage_metadata.input_token_details keys of cache writes: ``cache_creation`` (LangChain's
# UsageMetadata), and per cache lifetime the ``ephemeral_5m_input_tokens`` /
# ``ephemeral_1h_input_tokens`` of Anthropic's ``usage.cache_creation``, copied by
# langchain-anthropic (1.x; it then writes ``cache_creation: 0``) and by langsmith's
# ``wrap_anthropic`` (0.15, only the non-zero ones, and no ``cache_creation``).
CACHE_WRITE_KEYS = ("cache_creation", "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
# Fields mapped onto the Step; everything else is kept in its attributes.
MAPPED = frozenset({
    "id", "trace_id", "parent_run_id", "name", "run_type", "start_time", "end_time", "error",
    "status", "inputs", "outputs", "prompt_tokens", "completion_tokens", "total_cost",
})  # fmt: skip


MULTIPART_PART = re.compile(rb'Content-Disposition: form-data; name="(?:post|patch)\.')


def sniff(head: bytes) -> float:
    if head.startswith(b"--") and MULTIPART_PART.search(head[:1024]):
        return 0.9
    if b'"run_type"' in head or b'"dotted_order"' in head:
        return 0.8
    return 0.0


def read(stream: IO[bytes], ctx: ReadContext) -> Iterator[Run | Step]:
    peek = getattr(stream, "peek", None)  # file and gzip streams can look ahead
    if peek is not None and not ctx.json_lines and peek(2)[:2] == b"--":
        records: Iterator[tuple[str, Any]] = iter([("multipart", _multipart(stream.read(), ctx))])
    else:
        records = iter_records(stream, ctx)
    for where, record in records:
        runs: list[tuple[str, Any]]  # whatever a record holds: each run is checked on its own
        if isinstance(record, dict) and ("post" in record or "patch" in record):
            merged: dict[str, dict[str, Any]] = {}
            for part in ("post", "patch"):
                runs_of_part = record.get(part) or []
                if not isinstance(runs_of_part, list):
                    ctx.bad(f"{where} {part}", "must be a list of runs")
                    continue
                for index, run in enumerate(runs_of_part):
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


def _multipart(data: bytes, ctx: ReadContext) -> dict[str, list[dict[str, Any]]]:
    """Saved ``multipart/form-data`` ingest bodies as one ``{post, patch}`` batch."""
    operations: dict[tuple[str, str], dict[str, Any]] = {}  # (post|patch, run id) -> fields
    for number, (name, payload) in enumerate(_parts(data, ctx), 1):
        op, _, rest = name.partition(".")
        if op not in ("post", "patch"):
            continue  # attachments and feedback are not steps
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            ctx.bad(f"part {number} ({name})", f"malformed JSON ({exc})")
            continue
        run_id, _, field = rest.partition(".")  # run ids are UUIDs: no dots
        run = operations.setdefault((op, run_id), {"id": run_id})
        if field:
            run[field] = value
        elif isinstance(value, dict):
            run.update(value)
        else:
            ctx.bad(f"part {number} ({name})", "expected a JSON object")
    batch: dict[str, list[dict[str, Any]]] = {"post": [], "patch": []}
    for (op, _), run in operations.items():
        batch[op].append(run)
    return batch


def _parts(data: bytes, ctx: ReadContext) -> Iterator[tuple[str, bytes]]:
    """(name, payload) of every part of one or more multipart bodies, in order."""
    position = 0
    while position < len(data):
        line_end = data.find(b"\r\n", position)
        delimiter = data[position:line_end]
        if line_end < 0 or not delimiter.startswith(b"--"):
            if data[position:].strip():
                ctx.bad(f"byte {position}", "expected a multipart boundary line")
            return
        closing = data.find(b"\r\n" + delimiter + b"--", line_end)
        if closing < 0:
            raise TraceFormatError(ctx.path, f"byte {position}", "multipart body is truncated")
        for part in data[line_end + 2 : closing].split(b"\r\n" + delimiter + b"\r\n"):
            headers, _, payload = part.partition(b"\r\n\r\n")
            match = re.search(rb'name="([^"]*)"', headers)
            if match is None:
                ctx.bad(f"byte {position}", "a multipart part without a name")
                continue
            yield match.group(1).decode("utf-8", "replace"), payload
        position = closing + 2 + len(delimiter) + 2
        while data[position : position + 2] == b"\r\n":
            position += 2


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
    model = metadata.get("ls_model_name") or invocation.get("model") or invocation.get("model_name")
    return as_text(model, "model")


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
        name=as_text(run.get("name"), "name") or "",
        start_ns=parse_time(run.get("start_time")),
        end_ns=parse_time(run.get("end_time")),
        status=status,
        error=None,
        input=run.get("inputs"),
        output=run.get("outputs"),
        attributes={k: v for k, v in run.items() if k not in MAPPED},
    )
    if error:
        # The Python SDK writes repr(exception), a blank line, then the traceback.
        message, _, traceback = str(error).partition("\n\nTraceback")
        step.error = message
        if traceback:
            step.attributes["error.traceback"] = "Traceback" + traceback
    if kind in (StepKind.LLM, StepKind.EMBEDDING):
        metadata = (run.get("extra") or {}).get("metadata") or {}
        step.model = _model(run)
        step.provider = as_text(metadata.get("ls_provider"), "provider")
        step.input_tokens = as_int(usage.get("input_tokens", run.get("prompt_tokens")))
        step.output_tokens = as_int(usage.get("output_tokens", run.get("completion_tokens")))
        # LangChain's usage_metadata counts cache reads and writes inside input_tokens.
        input_details = usage.get("input_token_details") or {}
        step.cached_input_tokens = as_int(input_details.get("cache_read"))
        written = [as_int(input_details.get(k)) for k in CACHE_WRITE_KEYS]
        if any(w is not None for w in written):  # cache_creation, or per cache lifetime
            step.cache_creation_tokens = as_int(input_details.get("cache_creation")) or sum(
                w or 0 for w in written[1:]
            )
        if written[1] is not None or written[2] is not None:  # split by lifetime: 1h known
            step.cache_write_1h_tokens = written[2] or 0
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
        # A thread: LangSmith groups runs by these metadata keys; a run's own
        # ``session_id`` is its project (tracer session), not a conversation.
        metadata = (run.get("extra") or {}).get("metadata") or {}
        session = run.get("thread_id") or next(
            (str(metadata[k]) for k in THREAD_KEYS if metadata.get(k)), None
        )
        yield root_run(
            step, NAME, session, {k: run[k] for k in ("session_name", "tags") if run.get(k)}
        )
    yield checked(step)
