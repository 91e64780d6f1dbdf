"""One contract over every importer: a neutral description of a trace is rendered into each
format, imported, and held to the same assertions, hostile cases included (a missing
parent, a parent cycle, a step without an end time)."""

from __future__ import annotations

import hashlib

import orjson
import pytest

from tracedesk.core.ingest import import_file
from tracedesk.core.model import Status

T0 = 1_772_359_200_000_000_000  # 2026-03-01T10:00:00Z
MS = 1_000_000

# name, parent name, kind, start ms, end ms (None: still open), extra
STEPS = [
    ("Concierge", None, "agent", 0, 1000, {}),
    (
        "chat-1",
        "Concierge",
        "llm",
        10,
        200,
        {"model": "gpt-4o", "in": 120, "out": 30, "cached": 64},
    ),
    ("find_table", "Concierge", "tool", 210, 300, {"args": {"party": 2}, "error": "no tables"}),
    (
        "chat-2",
        "Concierge",
        "llm",
        310,
        600,
        {"model": "gpt-4o", "in": 200, "out": 40, "cached": 0},
    ),
    ("late_tool", "ghost", "tool", 610, 700, {"args": {"q": "x"}}),  # its parent was never exported
    ("loop-a", "loop-b", "tool", 710, 720, {"args": {"n": 1}}),  # loop-a and loop-b: a cycle
    ("loop-b", "loop-a", "tool", 730, 740, {"args": {"n": 2}}),
    ("still-open", "Concierge", "tool", 900, None, {"args": {"n": 3}}),
]
REQUEST = "Book a table for two at 7pm"


def hexid(name: str, length: int) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:length]


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    seconds, rest = divmod(ms, 1000)
    return f"2026-03-01T10:00:{seconds:02d}.{rest:03d}000+00:00"


def render_native() -> bytes:
    lines = [{"type": "header", "format": "tracedesk", "version": 1},
             {"type": "run", "id": "contract", "name": "contract run", "request": REQUEST}]  # fmt: skip
    for name, parent, kind, start, end, x in STEPS:
        step = {"type": "step", "run_id": "contract", "id": name, "parent_id": parent, "kind": kind,
                "name": name, "start_ns": T0 + start * MS, "status": "error" if "error" in x else "ok"}  # fmt: skip
        if end is not None:
            step["end_ns"] = T0 + end * MS
        if kind == "llm":
            step.update(model=x["model"], input_tokens=x["in"], output_tokens=x["out"],
                        cached_input_tokens=x["cached"], input=[{"role": "user", "content": REQUEST}])  # fmt: skip
        if kind == "tool":
            step.update(tool_name=name, tool_args=x["args"])
        if "error" in x:
            step["error"] = x["error"]
        lines.append(step)
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def render_otlp() -> bytes:
    def kv(key, value):
        typed = {"intValue": str(value)} if isinstance(value, int) else {"stringValue": value}
        return {"key": key, "value": typed}

    spans = []
    for name, parent, kind, start, end, x in STEPS:
        attrs = {"agent": [kv("gen_ai.operation.name", "invoke_agent"),
                           kv("gen_ai.input.messages", orjson.dumps([{"role": "user", "content": REQUEST}]).decode())],
                 "llm": [kv("gen_ai.operation.name", "chat"), kv("gen_ai.request.model", x.get("model", "")),
                         kv("gen_ai.usage.input_tokens", x.get("in", 0)), kv("gen_ai.usage.output_tokens", x.get("out", 0)),
                         kv("gen_ai.usage.cache_read.input_tokens", x.get("cached", 0))],
                 "tool": [kv("gen_ai.operation.name", "execute_tool"), kv("gen_ai.tool.name", name),
                          kv("gen_ai.tool.call.arguments", orjson.dumps(x.get("args")).decode())]}[kind]  # fmt: skip
        span = {"traceId": hexid("contract", 32), "spanId": hexid(name, 16), "name": name, "kind": 1,
                "parentSpanId": hexid(parent, 16) if parent else "", "attributes": attrs,
                "startTimeUnixNano": str(T0 + start * MS),
                "status": {"code": 2, "message": x["error"]} if "error" in x else {"code": 1}}  # fmt: skip
        if end is not None:
            span["endTimeUnixNano"] = str(T0 + end * MS)
        spans.append(span)
    half = len(spans) // 2  # two collector lines, children before parents in the second
    lines = [{"resourceSpans": [{"resource": {"attributes": [kv("service.name", "contract")]},
                                 "scopeSpans": [{"scope": {"name": "c"}, "spans": part}]}]}
             for part in (spans[half:], spans[:half])]  # fmt: skip
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def render_openai_agents() -> bytes:
    lines = [{"object": "trace", "id": "trace_contract", "workflow_name": "contract run"}]
    for name, parent, kind, start, end, x in reversed(STEPS):  # exported as they end
        data = {"agent": {"type": "agent", "name": name},
                "llm": {"type": "generation", "model": x.get("model"),
                        "input": [{"role": "user", "content": REQUEST}],
                        "usage": {"input_tokens": x.get("in"), "output_tokens": x.get("out"),
                                  "input_tokens_details": {"cached_tokens": x.get("cached")}}},
                "tool": {"type": "function", "name": name, "input": orjson.dumps(x.get("args")).decode()}}[kind]  # fmt: skip
        lines.append({"object": "trace.span", "id": f"span_{name}", "trace_id": "trace_contract",
                      "parent_id": f"span_{parent}" if parent else None, "started_at": iso(start),
                      "ended_at": iso(end), "span_data": data,
                      "error": {"message": x["error"], "data": None} if "error" in x else None})  # fmt: skip
    return b"".join(orjson.dumps(line) + b"\n" for line in lines)


def render_langsmith() -> bytes:
    runs = []
    for name, parent, kind, start, end, x in STEPS:
        run = {"id": name, "trace_id": "Concierge", "parent_run_id": parent, "name": name,
               "run_type": {"agent": "chain", "llm": "llm", "tool": "tool"}[kind],
               "start_time": iso(start), "end_time": iso(end), "error": x.get("error"),
               "inputs": x.get("args", {"messages": [{"role": "user", "content": REQUEST}]})}  # fmt: skip
        if kind == "llm":
            run["outputs"] = {"usage_metadata": {"input_tokens": x["in"], "output_tokens": x["out"],
                                                 "input_token_details": {"cache_read": x["cached"]}}}  # fmt: skip
            run["extra"] = {"metadata": {"ls_model_name": x["model"], "ls_provider": "openai"}}
        runs.append(run)
    return orjson.dumps(runs)


def render_langfuse() -> bytes:
    observations = []
    for name, parent, kind, start, end, x in STEPS:
        obs = {"id": name, "traceId": "contract", "parentObservationId": parent, "name": name,
               "type": {"agent": "AGENT", "llm": "GENERATION", "tool": "TOOL"}[kind],
               "startTime": iso(start), "endTime": iso(end),
               "level": "ERROR" if "error" in x else "DEFAULT", "statusMessage": x.get("error")}  # fmt: skip
        if kind == "llm":
            obs.update(model=x["model"], input=[{"role": "user", "content": REQUEST}],
                       usageDetails={"input": x["in"], "output": x["out"], "total": x["in"] + x["out"]})  # fmt: skip
            obs["usageDetails"]["input_cached_tokens"] = x["cached"]
            obs["usageDetails"]["total"] = x["in"] + x["out"]  # cached counted inside input
        if kind == "tool":
            obs["input"] = x["args"]
        observations.append(obs)
    document = {"trace": {"id": "contract", "name": "contract run", "timestamp": iso(0),
                          "input": orjson.dumps(REQUEST).decode()}, "observations": observations}  # fmt: skip
    return orjson.dumps(document)


# How each format names a step's id, from its neutral name.
STEP_ID = {
    "tracedesk": lambda name: name,
    "otlp": lambda name: hexid(name, 16),
    "openai-agents": lambda name: f"span_{name}",
    "langsmith": lambda name: name,
    "langfuse": lambda name: name,
}

RENDERERS = {
    "tracedesk": render_native,
    "otlp": render_otlp,
    "openai-agents": render_openai_agents,
    "langsmith": render_langsmith,
    "langfuse": render_langfuse,
}


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_every_importer_keeps_the_contract(store, tmp_path, fmt):
    path = tmp_path / f"contract.{fmt}"
    path.write_bytes(RENDERERS[fmt]())
    result = import_file(store, path)
    assert (result.format, result.runs, result.steps) == (fmt, 1, len(STEPS))
    [run] = store.runs()
    name_of = {STEP_ID[fmt](name): name for name, *_ in STEPS}
    steps = {name_of[s.id]: s for s in store.steps(run.id)}
    by_id = {s.id: name for name, s in steps.items()}
    assert set(steps) == {name for name, *_ in STEPS}

    # The tree: links kept where they resolve; the orphan and the cycle go to the root.
    parent_of = {name: by_id.get(s.parent_id) for name, s in steps.items()}
    assert parent_of["chat-1"] == parent_of["find_table"] == parent_of["still-open"] == "Concierge"
    assert parent_of["Concierge"] is None and parent_of["late_tool"] is None
    assert sorted(filter(None, (parent_of["loop-a"], parent_of["loop-b"]))) in (
        ["loop-a"],
        ["loop-b"],
    )
    assert steps["late_tool"].attributes["tracedesk.lost_parent_id"]
    warnings = " ".join(result.warnings)
    assert "missing parent" in warnings and "parent cycle" in warnings
    assert steps["chat-1"].depth == 1 and steps["Concierge"].depth == 0

    # Kinds, tokens, tools, errors, times.
    assert (steps["chat-1"].kind, steps["find_table"].kind) == ("llm", "tool")
    assert steps["Concierge"].kind in ("agent", "chain")  # LangSmith has no agent run type
    assert (run.input_tokens, run.output_tokens, run.cached_input_tokens) == (320, 70, 64)
    assert steps["chat-1"].model == "gpt-4o"
    assert (steps["find_table"].tool_name, steps["find_table"].tool_args) == (
        "find_table",
        {"party": 2},
    )
    assert (steps["find_table"].status, steps["find_table"].error) == (Status.ERROR, "no tables")
    assert steps["chat-1"].start_ns == T0 + 10 * MS and steps["chat-1"].duration_ns == 190 * MS
    assert steps["still-open"].end_ns is None and steps["still-open"].duration_ns is None
    assert run.request == REQUEST
    assert run.cost is not None and run.cost > 0  # priced from the table (gpt-4o)
