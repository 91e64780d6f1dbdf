"""Record what the real Langfuse Python SDK exports over OTLP, offline.

The Langfuse SDK (v3 and newer) is built on OpenTelemetry: every observation is an OTel span
with `langfuse.*` attributes, and a BatchSpanProcessor posts them as OTLP/HTTP protobuf to
`<base_url>/api/public/otel/v1/traces`. This script runs a tiny capture server on 127.0.0.1
(a random free port, in a thread), points the SDK at it and keeps every request body. Nothing
else is reached: each story is scripted (the "model" answers are written here, no LLM is
called) and the SDK is configured only through its public API (`Langfuse(...)`, `@observe`,
`start_as_current_observation`, `update`, `propagate_attributes`, `flush`, `shutdown`).

Each scenario runs in its own child process (`--child <scenario> <base_url>`), like a real
app: one `Langfuse` client, one OpenTelemetry TracerProvider, its own environment. The child
flushes and shuts the client down; the parent then decodes what arrived and writes

    <scenario>.pb           the request body as received (gunzipped); if the SDK sent several
                            requests for one scenario, one ExportTraceServiceRequest with their
                            resource_spans concatenated, SerializeToString()
    <scenario>.otlp.json    the same message as protobuf's JSON mapping (MessageToJson)
    <scenario>.counts.json  what a reader must find in it, counted from the captured spans

and stops if the counts differ from what the story intended. Span and trace ids come from a
seeded `id_generator` (a public `Langfuse(...)` argument), so they are the same on every
run; timestamps are not.

Re-record (needs only PyPI; never reaches a real Langfuse):

    python3 -m venv /tmp/lf-rec
    /tmp/lf-rec/bin/pip install langfuse==5.0.4 opentelemetry-proto==1.45.2 protobuf==7.36.2
    /tmp/lf-rec/bin/python tools/record/langfuse_sdk.py

(langfuse 5.0.4 pulls opentelemetry-api/-sdk/-exporter-otlp-proto-http 1.45.2.)
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "recorded" / "langfuse-otlp"
OTLP_PATH = "/api/public/otel/v1/traces"
PUBLIC_KEY, SECRET_KEY = "pk-lf-test", "sk-lf-test"
GPT = "gpt-4o-2024-08-06"
CLAUDE = "claude-sonnet-4-5-20250929"
CHILD_TIMEOUT = 60  # seconds; flush() and shutdown() only talk to the capture server
SDK_PACKAGES = (
    "langfuse",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-exporter-otlp-proto-common",
    "opentelemetry-proto",
    "protobuf",
)
# Langfuse attribute names (langfuse._client.attributes.LangfuseOtelSpanAttributes).
TYPE = "langfuse.observation.type"
LEVEL = "langfuse.observation.level"
MODEL = "langfuse.observation.model.name"
USAGE = "langfuse.observation.usage_details"
COST = "langfuse.observation.cost_details"
INPUT = "langfuse.observation.input"
OUTPUT = "langfuse.observation.output"
# Usage keys Langfuse prices as cache reads / cache writes (its default model prices use
# input_cached_tokens and input_cache_read for OpenAI, input_cache_read and
# input_cache_creation for Anthropic; "input" is the uncached rest).
CACHE_READ_KEYS = ("input_cached_tokens", "input_cache_read")
CACHE_CREATION_KEYS = ("input_cache_creation",)


# --- the scenarios ------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    story: str
    capture: bool
    run: Callable[[Any], None]  # the child's story, given the Langfuse client
    expect: dict[str, Any] = field(default_factory=dict)  # counts the story must produce


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


# Each story is a function of the client; it is only called in the child process.


def story_agent_tools(langfuse: Any) -> None:
    """An agent: model asks for get_weather, the tool runs, the model answers."""
    from langfuse import observe, propagate_attributes

    @observe(name="get_weather", as_type="tool")
    def get_weather(city: str) -> dict[str, Any]:
        return {"city": city, "temp_c": 4, "conditions": "light rain"}

    @observe(name="weather-agent", as_type="agent")
    def run_agent(question: str) -> str:
        with propagate_attributes(
            trace_name="weather-question",
            user_id="user-42",
            session_id="sess-1",
            tags=["recorder", "weather"],
            metadata={"tenant": "acme"},
        ):
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": "You are a weather assistant. Use the tools."},
                {"role": "user", "content": question},
            ]
            with langfuse.start_as_current_observation(
                as_type="generation",
                name="chat gpt-4o",
                model=GPT,
                model_parameters={"temperature": 0},
                input=messages,
            ) as generation:
                call = {
                    "id": "call_weather_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
                generation.update(
                    output={"role": "assistant", "content": None, "tool_calls": [call]},
                    usage_details={"input": 150, "input_cached_tokens": 256, "output": 18},
                    cost_details={
                        "input": 0.000375,
                        "input_cached_tokens": 0.00032,
                        "output": 0.00018,
                        "total": 0.000875,
                    },
                    metadata={"finish_reason": "tool_calls"},
                )
            result = get_weather("Oslo")
            messages.append({"role": "assistant", "tool_calls": [call]})
            messages.append(
                {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)}
            )
            answer = "It is 4°C with light rain in Oslo."
            with langfuse.start_as_current_observation(
                as_type="generation",
                name="chat gpt-4o",
                model=GPT,
                model_parameters={"temperature": 0},
                input=messages,
            ) as generation:
                generation.update(
                    output={"role": "assistant", "content": answer},
                    usage_details={"input": 214, "input_cached_tokens": 256, "output": 42},
                    cost_details={
                        "input": 0.000535,
                        "input_cached_tokens": 0.00032,
                        "output": 0.00042,
                        "total": 0.001275,
                    },
                    metadata={"finish_reason": "stop"},
                )
            return answer

    run_agent("What is the weather in Oslo?")


def story_anthropic_cache(langfuse: Any) -> None:
    """One Claude call on its own (the generation is the trace's root), with prompt caching."""
    from langfuse import propagate_attributes

    with (
        propagate_attributes(trace_name="summarise-contract", session_id="sess-2"),
        langfuse.start_as_current_observation(
            as_type="generation",
            name="anthropic.messages.create",
            model=CLAUDE,
            model_parameters={"max_tokens": 1024},
            input=[
                {"role": "system", "content": "<the 5,000-token contract, cache_control>"},
                {"role": "user", "content": "Summarise the termination clauses."},
            ],
        ) as generation,
    ):
        generation.update(
            output={
                "role": "assistant",
                "content": "Either party may terminate with 90 days' written notice; ...",
            },
            # Anthropic's usage, as Langfuse names it: input_tokens (uncached) -> input,
            # cache_read_input_tokens -> input_cache_read,
            # cache_creation_input_tokens -> input_cache_creation.
            usage_details={
                "input": 24,
                "input_cache_read": 3200,
                "input_cache_creation": 1800,
                "output": 310,
            },
            cost_details={
                "input": 0.000072,
                "input_cache_read": 0.00096,
                "input_cache_creation": 0.00675,
                "output": 0.00465,
                "total": 0.012432,
            },
            metadata={"stop_reason": "end_turn"},
        )


class HTTPError(Exception):
    pass


def story_tool_error(langfuse: Any) -> None:
    """A tool marked ERROR by hand, a model call, a tool that raises, a final model call."""
    from langfuse import observe, propagate_attributes

    @observe(name="read_db", as_type="tool")
    def read_db(table: str) -> list[dict[str, Any]]:
        raise TimeoutError(f"read_db: query on table '{table}' timed out after 30s")

    def chat(messages: list[dict[str, Any]], output: dict[str, Any], i: int) -> None:
        with langfuse.start_as_current_observation(
            as_type="generation", name="chat gpt-4o", model=GPT, input=messages
        ) as generation:
            generation.update(
                output=output,
                usage_details={"input": 300 + 50 * i, "output": 20 + i},
                cost_details={"total": [0.00095, 0.0011, 0.001245][i]},
            )

    @observe(name="report-agent", as_type="agent")
    def run_agent(question: str) -> str:
        with propagate_attributes(
            trace_name="report-fetch", user_id="user-42", session_id="sess-3"
        ):
            messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
            fetch = {"name": "fetch_url", "arguments": '{"url": "https://example.com/report"}'}
            chat(messages, {"role": "assistant", "tool_calls": [fetch]}, 0)
            with langfuse.start_as_current_observation(
                as_type="tool", name="fetch_url", input={"url": "https://example.com/report"}
            ) as tool:
                try:
                    raise HTTPError("HTTP 503: Service Unavailable")
                except HTTPError as exc:
                    tool.update(output={"error": str(exc)}, level="ERROR", status_message=str(exc))
            messages.append({"role": "tool", "content": "HTTP 503: Service Unavailable"})
            read = {"name": "read_db", "arguments": '{"table": "reports"}'}
            chat(messages, {"role": "assistant", "tool_calls": [read]}, 1)
            try:
                read_db("reports")
            except TimeoutError as exc:
                messages.append({"role": "tool", "content": str(exc)})
            answer = "I could not get the report: the URL returned 503 and the database timed out."
            chat(messages, {"role": "assistant", "content": answer}, 2)
            return answer

    run_agent("Get me the latest report.")


def _scenarios() -> list[Scenario]:
    agent_counts = {
        "runs": 1,
        "steps": 4,
        "llm_spans": 2,
        "tool_spans": 1,
        "errors_status": 0,
        "errors_level": 0,
        "errors": 0,
        "input_tokens": 876,
        "output_tokens": 60,
        "cached_input_tokens": 512,
        "cache_creation_tokens": 0,
        "reported_cost": "0.002150",
        "models": [GPT],
    }
    agent_story = (
        "A weather agent asks gpt-4o, which requests get_weather(Oslo); the tool runs and "
        "gpt-4o answers, both calls partly served from the prompt cache."
    )
    return [
        Scenario(
            "agent_tools",
            agent_story,
            True,
            story_agent_tools,
            {**agent_counts, "content_captured": True},
        ),
        Scenario(
            "agent_tools_nocontent",
            agent_story + " Recorded with @observe I/O capture off and a mask that drops "
            "all input, output and metadata.",
            False,
            story_agent_tools,
            {**agent_counts, "content_captured": False},
        ),
        Scenario(
            "anthropic_cache",
            "A single Claude Sonnet 4.5 call (the only observation in its trace) reads 3,200 "
            "prompt tokens from the cache and writes 1,800 to it.",
            True,
            story_anthropic_cache,
            {
                "runs": 1,
                "steps": 1,
                "llm_spans": 1,
                "tool_spans": 0,
                "errors_status": 0,
                "errors_level": 0,
                "errors": 0,
                "input_tokens": 5024,
                "output_tokens": 310,
                "cached_input_tokens": 3200,
                "cache_creation_tokens": 1800,
                "reported_cost": "0.012432",
                "models": [CLAUDE],
                "content_captured": True,
            },
        ),
        Scenario(
            "tool_error",
            "A report agent's fetch_url tool is marked ERROR (HTTP 503) by hand, then after "
            "another model call read_db raises TimeoutError inside @observe, and the model "
            "answers with what failed.",
            True,
            story_tool_error,
            {
                "runs": 1,
                "steps": 6,
                "llm_spans": 3,
                "tool_spans": 2,
                "errors_status": 2,
                "errors_level": 2,
                "errors": 2,
                "input_tokens": 1050,
                "output_tokens": 63,
                "cached_input_tokens": 0,
                "cache_creation_tokens": 0,
                "reported_cost": "0.003295",
                "models": [GPT],
                "content_captured": True,
            },
        ),
    ]


# --- the child: run one story with the real SDK -------------------------------------------


def drop_content(*, data: Any, **kwargs: Any) -> None:
    """A Langfuse `mask` that drops every input, output and metadata value."""
    return None


def child(name: str, base_url: str) -> int:
    from langfuse import Langfuse
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class SeededIds(IdGenerator):
        def __init__(self, seed: int) -> None:
            self.random = random.Random(seed)

        def generate_span_id(self) -> int:
            return self.random.getrandbits(64) or 1

        def generate_trace_id(self) -> int:
            return self.random.getrandbits(128) or 1

    scenario = next(s for s in _scenarios() if s.name == name)
    langfuse = Langfuse(
        public_key=PUBLIC_KEY,
        secret_key=SECRET_KEY,
        base_url=base_url,
        id_generator=SeededIds(_seed(name)),
        mask=None if scenario.capture else drop_content,
    )
    scenario.run(langfuse)
    langfuse.flush()
    langfuse.shutdown()
    return 0


# --- the parent: capture server, decoding, counting -----------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes  # as received


class CaptureServer:
    """Keeps every request; answers the OTLP path with an empty ExportTraceServiceResponse."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        self.requests: list[Request] = []
        self.lock = threading.Lock()
        empty = ExportTraceServiceResponse().SerializeToString()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length) if length else b""
                with outer.lock:
                    outer.requests.append(
                        Request(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                        )
                    )
                if self.path.split("?")[0] == OTLP_PATH:
                    data, kind = empty, "application/x-protobuf"
                else:
                    data, kind = b"{}", "application/json"
                self.send_response(200)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def take(self) -> list[Request]:
        with self.lock:
            taken, self.requests = self.requests, []
        return taken

    def __enter__(self) -> CaptureServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def child_env(base_url: str, capture: bool) -> dict[str, str]:
    """A clean environment: no LANGFUSE_*/OTEL_*/proxy/CI variables leak into the recording."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env["PYTHONHASHSEED"] = "0"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    if not capture:
        env["LANGFUSE_OBSERVE_DECORATOR_IO_CAPTURE_ENABLED"] = "false"
    return env


def sdk_versions() -> str:
    found = []
    for name in SDK_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name}=={metadata.version(name)}")
    found.append("Python " + ".".join(map(str, sys.version_info[:3])))
    return ", ".join(found)


def body_bytes(request: Request) -> bytes:
    encoding = request.headers.get("content-encoding", "").lower()
    if encoding == "gzip":
        return gzip.decompress(request.body)
    if encoding not in ("", "identity"):
        raise SystemExit(f"unexpected content-encoding {encoding!r}")
    return request.body


def attr_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [attr_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: attr_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "int_value":
        return int(value.int_value)
    return getattr(value, kind) if kind else None


def attributes(span: Any) -> dict[str, Any]:
    return {kv.key: attr_value(kv.value) for kv in span.attributes}


def check_encoding(name: str, attrs: list[dict[str, Any]]) -> None:
    """Stop if the SDK no longer writes what README.section.md says it writes."""
    problems = []
    for a in attrs:
        if a.get(TYPE) not in ("agent", "tool", "generation", "span"):
            problems.append(f"{TYPE}={a.get(TYPE)!r}")
        for key in (USAGE, COST, "langfuse.observation.model.parameters"):
            if key in a and not isinstance(
                json.loads(a[key]) if isinstance(a[key], str) else None, dict
            ):
                problems.append(f"{key} is not a JSON object in a string: {a[key]!r}")
        for key, value in a.items():
            if key.startswith(("langfuse.trace.metadata.", "langfuse.observation.metadata.")):
                if not isinstance(value, str):
                    problems.append(f"{key} is not a string")
                else:
                    json.loads(value)  # JSON-encoded, strings included
        if a.get(TYPE) == "generation" and USAGE not in a:
            problems.append("a generation without usage_details")
    if problems:
        raise SystemExit(f"{name}: " + "; ".join(sorted(set(problems))))


def count(request: Any, scenario: Scenario, sdk: str) -> dict[str, Any]:
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    spans = [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]
    attrs = [attributes(s) for s in spans]
    check_encoding(scenario.name, attrs)
    generations = [a for a in attrs if a.get(TYPE) == "generation"]
    is_status_error = [s.status.code == Status.STATUS_CODE_ERROR for s in spans]
    is_level_error = [a.get(LEVEL) == "ERROR" for a in attrs]
    tokens = {"input": 0, "output": 0, "cache_read": 0, "cache_creation": 0}
    costs: list[Decimal] = []
    for a in generations:
        usage = json.loads(a.get(USAGE, "{}"))
        for key, value in usage.items():
            if "input" in key:  # Langfuse counts every usage key containing "input" as input
                tokens["input"] += value
            if "output" in key:
                tokens["output"] += value
            if key in CACHE_READ_KEYS:
                tokens["cache_read"] += value
            if key in CACHE_CREATION_KEYS:
                tokens["cache_creation"] += value
        if COST in a:
            total = json.loads(a[COST], parse_float=Decimal).get("total")
            if total is not None:
                costs.append(Decimal(total))
    return {
        "sdk": sdk,
        "runs": len({s.trace_id for s in spans}),
        "steps": len(spans),
        "llm_spans": len(generations),
        "tool_spans": sum(a.get(TYPE) == "tool" for a in attrs),
        "errors": sum(st or lv for st, lv in zip(is_status_error, is_level_error, strict=True)),
        "errors_status": sum(is_status_error),
        "errors_level": sum(is_level_error),
        "input_tokens": tokens["input"],
        "output_tokens": tokens["output"],
        "cached_input_tokens": tokens["cache_read"],
        "cache_creation_tokens": tokens["cache_creation"],
        "reported_cost": str(sum(costs, Decimal(0))) if costs else None,
        "models": sorted({a[MODEL] for a in attrs if MODEL in a}),
        "content_captured": any(INPUT in a or OUTPUT in a for a in attrs),
        "story": scenario.story,
        "loop": None,
    }


def record(server: CaptureServer, scenario: Scenario, sdk: str) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToJson
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    server.take()
    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", scenario.name, server.base_url],
        env=child_env(server.base_url, scenario.capture),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT,
    )
    if result.returncode != 0:
        raise SystemExit(f"{scenario.name}: child failed\n{result.stdout}{result.stderr}")
    requests = server.take()
    otlp = [r for r in requests if r.path.split("?")[0] == OTLP_PATH]
    other = [f"{r.method} {r.path}" for r in requests if r not in otlp]
    if not otlp:
        raise SystemExit(f"{scenario.name}: the SDK posted no OTLP request ({other})")
    if any(r.method != "POST" for r in otlp):
        raise SystemExit(f"{scenario.name}: non-POST on the OTLP path")

    bodies = [body_bytes(r) for r in otlp]
    messages = [ExportTraceServiceRequest.FromString(b) for b in bodies]
    if len(messages) == 1:
        merged, data = messages[0], bodies[0]
    else:
        merged = ExportTraceServiceRequest()
        for m in messages:
            merged.resource_spans.extend(m.resource_spans)
        data = merged.SerializeToString()
    if ExportTraceServiceRequest.FromString(data) != merged:
        raise SystemExit(f"{scenario.name}: the protobuf bytes do not read back")

    counts = count(merged, scenario, sdk)
    wrong = {k: (counts[k], v) for k, v in scenario.expect.items() if counts.get(k) != v}
    if wrong:
        raise SystemExit(
            f"{scenario.name}: captured spans differ from the story (got, want): {wrong}"
        )

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{scenario.name}.pb").write_bytes(data)
    (OUT / f"{scenario.name}.otlp.json").write_text(MessageToJson(merged, indent=2) + "\n")
    (OUT / f"{scenario.name}.counts.json").write_text(
        json.dumps(counts, indent=2, ensure_ascii=False) + "\n"
    )
    first = otlp[0].headers
    return {
        "name": scenario.name,
        **counts,
        "requests": len(otlp),
        "content_type": first.get("content-type", ""),
        "content_encoding": first.get("content-encoding", "") or "-",
        "ingestion_version": first.get("x-langfuse-ingestion-version", "-"),
        "other_requests": other,
    }


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        return child(sys.argv[2], sys.argv[3])
    if len(sys.argv) != 1:
        raise SystemExit("usage: langfuse_sdk.py")
    sdk = sdk_versions()
    rows = []
    with CaptureServer() as server:
        for scenario in _scenarios():
            rows.append(record(server, scenario, sdk))

    print(f"wrote {len(rows) * 3} files to {OUT.relative_to(ROOT)}")
    print(f"sdk: {sdk}")
    columns = [
        ("scenario", "name", 22),
        ("req", "requests", 3),
        ("spans", "steps", 5),
        ("llm", "llm_spans", 3),
        ("tool", "tool_spans", 4),
        ("err", "errors", 3),
        ("in_tok", "input_tokens", 6),
        ("out_tok", "output_tokens", 7),
        ("cache_r", "cached_input_tokens", 7),
        ("cache_w", "cache_creation_tokens", 7),
        ("cost", "reported_cost", 8),
        ("content", "content_captured", 7),
        ("encoding", "content_encoding", 8),
        ("type", "content_type", 0),
    ]
    print("  ".join(title.ljust(width) for title, _, width in columns).rstrip())
    for row in rows:
        print("  ".join(str(row[key]).ljust(width) for _, key, width in columns).rstrip())
    others = sorted({o for row in rows for o in row["other_requests"]})
    print("other requests: " + (", ".join(others) if others else "none"))
    print(
        "x-langfuse-ingestion-version: " + ", ".join(sorted({r["ingestion_version"] for r in rows}))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
