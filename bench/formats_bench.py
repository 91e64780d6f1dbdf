"""Import speed per span of every JSON format, beside OTLP, on the same spans.

    python bench/formats_bench.py [--spans 100000]

The spans of bench/import_bench.py's OTLP file (traces of 20 spans with GenAI attributes)
are written again in each format's own shape: LangSmith runs, Langfuse exports, OpenAI
Agents SDK spans and tracedesk JSON Lines, one trace per line. Each file is imported into
a fresh database in its own process; the figure is µs per span and the ratio to OTLP
(issue 13's target: within 1.2x).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from import_bench import build, generate


def _iso(ns: int) -> str:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC).isoformat()


def _spans(otlp_line: bytes) -> list[dict]:
    spans = orjson.loads(otlp_line)["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for span in spans:
        attrs = {}
        for kv in span.get("attributes", []):
            value = kv["value"]
            attrs[kv["key"]] = (
                int(value["intValue"]) if "intValue" in value else value["stringValue"]
            )
        span["attrs"] = attrs
        span["start"], span["end"] = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
    return spans


def _langsmith(spans: list[dict]) -> list[dict]:
    runs = []
    for s in spans:
        a = s["attrs"]
        op = a.get("gen_ai.operation.name")
        run = {"id": s["spanId"], "trace_id": s["traceId"], "parent_run_id": s.get("parentSpanId"),
               "name": s["name"], "start_time": _iso(s["start"]), "end_time": _iso(s["end"]),
               "run_type": {"chat": "llm", "execute_tool": "tool"}.get(op, "chain")}  # fmt: skip
        if op == "chat":
            run["inputs"] = {"messages": orjson.loads(a["gen_ai.input.messages"])}
            run["extra"] = {"metadata": {"ls_model_name": a["gen_ai.request.model"],
                                         "ls_provider": "openai"}}  # fmt: skip
            run["outputs"] = {"usage_metadata": {  # where the LangSmith SDK writes it
                "input_tokens": a["gen_ai.usage.input_tokens"],
                "output_tokens": a["gen_ai.usage.output_tokens"]}}  # fmt: skip
        elif op == "execute_tool":
            run["inputs"] = orjson.loads(a["gen_ai.tool.call.arguments"])
        runs.append(run)
    return runs


def _langfuse(spans: list[dict]) -> dict:
    root = next(s for s in spans if not s.get("parentSpanId"))
    observations = []
    for s in spans:
        a = s["attrs"]
        op = a.get("gen_ai.operation.name")
        item = {"id": s["spanId"], "traceId": s["traceId"], "name": s["name"],
                "parentObservationId": s.get("parentSpanId"), "startTime": _iso(s["start"]),
                "endTime": _iso(s["end"]),
                "type": {"chat": "GENERATION", "execute_tool": "TOOL"}.get(op, "AGENT")}  # fmt: skip
        if op == "chat":
            item["model"] = a["gen_ai.request.model"]
            item["input"] = a["gen_ai.input.messages"]
            item["usageDetails"] = {"input": a["gen_ai.usage.input_tokens"],
                                    "output": a["gen_ai.usage.output_tokens"]}  # fmt: skip
        elif op == "execute_tool":
            item["input"] = a["gen_ai.tool.call.arguments"]
        observations.append(item)
    trace = {"id": root["traceId"], "name": root["name"], "timestamp": _iso(root["start"])}
    return {"trace": trace, "observations": observations}


def _openai_agents(spans: list[dict]) -> list[dict]:
    records = []
    for s in spans:
        a = s["attrs"]
        op = a.get("gen_ai.operation.name")
        if op == "chat":
            data = {"type": "generation", "model": a["gen_ai.request.model"],
                    "input": orjson.loads(a["gen_ai.input.messages"]),
                    "usage": {"input_tokens": a["gen_ai.usage.input_tokens"],
                              "output_tokens": a["gen_ai.usage.output_tokens"]}}  # fmt: skip
        elif op == "execute_tool":
            data = {"type": "function", "name": a["gen_ai.tool.name"],
                    "input": a["gen_ai.tool.call.arguments"]}  # fmt: skip
        else:
            data = {"type": "agent", "name": a.get("gen_ai.agent.name", s["name"])}
        records.append({"object": "trace.span", "id": f"span_{s['spanId']}",
                        "trace_id": f"trace_{s['traceId']}",
                        "parent_id": f"span_{s['parentSpanId']}" if s.get("parentSpanId") else None,
                        "started_at": _iso(s["start"]), "ended_at": _iso(s["end"]),
                        "span_data": data, "error": None})  # fmt: skip
    return records


def _native(spans: list[dict]) -> list[dict]:
    records = []
    for s in spans:
        a = s["attrs"]
        op = a.get("gen_ai.operation.name")
        step = {"type": "step", "run_id": s["traceId"], "id": s["spanId"],
                "parent_id": s.get("parentSpanId"), "name": s["name"], "start_ns": s["start"],
                "end_ns": s["end"],
                "kind": {"chat": "llm", "execute_tool": "tool"}.get(op, "agent")}  # fmt: skip
        if op == "chat":
            step.update(model=a["gen_ai.request.model"], input=a["gen_ai.input.messages"],
                        input_tokens=a["gen_ai.usage.input_tokens"],
                        output_tokens=a["gen_ai.usage.output_tokens"])  # fmt: skip
        elif op == "execute_tool":
            step.update(tool_name=a["gen_ai.tool.name"], tool_args=a["gen_ai.tool.call.arguments"])
        records.append(step)
    return records


def write_formats(otlp: Path, folder: Path) -> dict[str, Path]:
    """The OTLP file's spans in every other JSON format, one trace per line."""
    paths = {name: folder / f"spans.{name}.jsonl"
             for name in ("langsmith", "langfuse", "openai-agents", "tracedesk")}  # fmt: skip
    outs = {name: path.open("wb") for name, path in paths.items()}
    outs["tracedesk"].write(b'{"type":"header","format":"tracedesk","version":1}\n')
    with otlp.open("rb") as lines:
        for line in lines:
            spans = _spans(line)
            outs["langsmith"].writelines(orjson.dumps(r) + b"\n" for r in _langsmith(spans))
            outs["langfuse"].write(orjson.dumps(_langfuse(spans)) + b"\n")
            outs["openai-agents"].writelines(orjson.dumps(r) + b"\n" for r in _openai_agents(spans))
            outs["tracedesk"].writelines(orjson.dumps(r) + b"\n" for r in _native(spans))
    for out in outs.values():
        out.close()
    return paths


def run_import(path: str, db: str) -> None:
    from tracedesk.core.ingest import import_file
    from tracedesk.core.store import Store

    started = time.perf_counter()
    with Store(db) as store:
        result = import_file(store, path)
        seconds = time.perf_counter() - started
        tokens = sum(r.input_tokens + r.output_tokens for r in store.runs())
    print(orjson.dumps({"seconds": seconds, "steps": result.steps, "runs": result.runs,
                        "tokens": tokens}).decode())  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_import(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        otlp = folder / "spans.otlp.jsonl"
        generate(otlp, args.spans)
        print(f"tracedesk: {build()}")
        files = {"otlp": otlp, **write_formats(otlp, folder)}
        per_span = {}
        for name, path in files.items():
            db = folder / f"{name}.db"
            done = subprocess.run([sys.executable, __file__, "--child", str(path), str(db)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            figures = orjson.loads(done.stdout.strip().splitlines()[-1])
            per_span[name] = 1e6 * figures["seconds"] / figures["steps"]
            print(f"{name:>14}: {figures['steps']:,} steps, {figures['runs']:,} runs,"
                  f" {figures['tokens']:,} tokens,"
                  f" {os.path.getsize(path) >> 20} MB, {figures['seconds']:.1f} s,"
                  f" {per_span[name]:.1f} µs/span, {per_span[name] / per_span['otlp']:.2f}x OTLP"
                  " (target <= 1.2x)")  # fmt: skip


if __name__ == "__main__":
    main()
