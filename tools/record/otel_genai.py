"""Record real OpenTelemetry GenAI traces under tests/fixtures/recorded/otel-genai/.

The spans come from real instrumentation, offline: the `openai` client talks to a scripted
OpenAI-compatible server on 127.0.0.1 (started here, in a thread), and the official
`opentelemetry-instrumentation-openai-v2` writes one `chat <model>` span per request. A small
hand-written agent loop (ask the model, run the tool it asks for, append the result, ask
again) adds one `execute_tool <name>` span per tool run and one `invoke_agent <name>` span
around the whole run, made with the OpenTelemetry API after the GenAI semantic conventions.
Spans go to the SDK's InMemorySpanExporter and are written with the official OTLP encoder:

    <scenario>.otlp.json    ExportTraceServiceRequest as protobuf's JSON mapping
                            (ids in base64, enums by name, 64-bit integers as strings)
    <scenario>.pb           the same message, SerializeToString()
    <scenario>.counts.json  what a reader must find in it

Each scenario is recorded twice: `<name>` with `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=
true` and `<name>_nocontent` without it (the OpenTelemetry default). On its default
(semconv 1.30) path, openai-v2 puts prompts and completions in log events, never on spans, so
content capture changes only the execute_tool spans here (gen_ai.tool.call.arguments and
gen_ai.tool.call.result); the log events are counted in the summary but not written.

Re-record (needs only PyPI; never reaches a real API):

    python3 -m venv /tmp/otel-rec
    /tmp/otel-rec/bin/pip install openai==2.54.0 opentelemetry-api==1.45.2 \\
        opentelemetry-sdk==1.45.2 opentelemetry-exporter-otlp-proto-common==1.45.2 \\
        opentelemetry-instrumentation-openai-v2==2.4b0 opentelemetry-util-genai==0.4b0
    /tmp/otel-rec/bin/python tools/record/otel_genai.py

Why those pins: openai 3.x depends on httpx2, while openai-v2 2.4b0 imports httpx. And
openai-v2 2.4b0 only allows `opentelemetry-util-genai>=0.4b0.dev`, but util-genai 1.2b0
and later drop the module it imports (`opentelemetry.util.genai.instruments`), and
1.0b0 and later always report "experimental mode", which sends openai-v2 down its opt-in
path, where `...CAPTURE_MESSAGE_CONTENT=true` is rejected (it wants SPAN_ONLY and the like) and,
with 1.1b0, error.type is written as "<class '...'>". With 0.4b0, openai-v2 behaves as its
documentation says. The script stops if the spans or log events show otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import openai
from google.protobuf.json_format import MessageToJson
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.semconv._incubating.attributes import (
    gen_ai_attributes as GenAI,
)
from opentelemetry.semconv.attributes import error_attributes
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "recorded" / "otel-genai"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
REQUEST_MODEL = "gpt-4o-mini"
RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
AGENT_NAME = "support-agent"
CREATED = 1_793_000_000  # fixed `created` in the scripted responses
MAX_REQUESTS = 12  # the agent loop gives up after this many model requests
LLM_ATTEMPTS = 5  # the agent loop's own retries of a failed model request
SDK_PACKAGES = (
    "openai",
    "httpx",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "opentelemetry-semantic-conventions",
    "opentelemetry-exporter-otlp-proto-common",
    "opentelemetry-proto",
    "protobuf",
)


# --- the scripted model -------------------------------------------------------------------


@dataclass
class Turn:
    """One scripted answer of the model server: tool calls, text, or an HTTP 429."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    text: str | None = None
    rate_limited: bool = False


def calls(*pairs: tuple[str, dict[str, Any]]) -> Turn:
    return Turn(calls=list(pairs))


def text(content: str) -> Turn:
    return Turn(text=content)


RATE_LIMITED = Turn(rate_limited=True)


def call_id(scenario: str, request: int, k: int) -> str:
    return f"call_{scenario}_{request:02d}_{k}"


def render(scenario: str, request: int, turn: Turn) -> tuple[int, dict[str, str], dict[str, Any]]:
    """The HTTP status, headers and JSON body the server sends for request number `request`."""
    if turn.rate_limited:
        body = {
            "error": {
                "message": "Rate limit reached for gpt-4o-mini in organization org-local on "
                "requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        }
        return 429, {"retry-after": "20", "x-request-id": f"req_{scenario}_{request:02d}"}, body
    if turn.calls:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": call_id(scenario, request, k),
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for k, (name, args) in enumerate(turn.calls)
            ],
        }
        finish = "tool_calls"
    else:
        message = {"role": "assistant", "content": turn.text, "refusal": None}
        finish = "stop"
    prompt, completion = 300 + 50 * request, 20 + request
    body = {
        "id": f"chatcmpl-{scenario}-{request:02d}",
        "object": "chat.completion",
        "created": CREATED + request,
        "model": RESPONSE_MODEL,
        "system_fingerprint": "fp_local_scripted",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }
    return 200, {"x-request-id": f"req_{scenario}_{request:02d}"}, body


class ScriptedServer:
    """An OpenAI-compatible /v1/chat/completions on 127.0.0.1 answering from a script."""

    def __init__(self) -> None:
        self.scenario = ""
        self.turns: list[Turn] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                request = json.loads(self.rfile.read(length) or b"{}")
                with outer.lock:
                    index = len(outer.requests)
                    outer.requests.append(request)
                    turn = outer.turns[index] if index < len(outer.turns) else None
                if self.path != "/v1/chat/completions" or turn is None:
                    status, headers, body = 500, {}, {"error": {"message": "script exhausted"}}
                else:
                    status, headers, body = render(outer.scenario, index, turn)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def load(self, scenario: str, turns: list[Turn]) -> None:
        with self.lock:
            self.scenario, self.turns, self.requests = scenario, list(turns), []

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- the tools ----------------------------------------------------------------------------


class HTTPError(Exception):
    pass


WEATHER = {
    "Oslo": {"city": "Oslo", "temp_c": 4, "conditions": "light rain"},
    "Bergen": {"city": "Bergen", "temp_c": 7, "conditions": "overcast"},
}
INVOICES = {
    1: [{"id": "INV-1001", "amount": 120.0}, {"id": "INV-1002", "amount": 89.5}],
    2: [{"id": "INV-1003", "amount": 410.0}, {"id": "INV-1004", "amount": 15.25}],
    3: [{"id": "INV-1005", "amount": 77.0}],
}


def get_weather(city: str) -> Any:
    return WEATHER[city]


def list_invoices(page: int) -> Any:
    return {"page": page, "invoices": INVOICES[page], "next_page": page + 1 if page < 3 else None}


def fetch_url(url: str) -> Any:
    raise HTTPError("HTTP 503: Service Unavailable")


def read_db(table: str) -> Any:
    raise TimeoutError(f"read_db: query on table '{table}' timed out after 30s")


def send_email(to: str, subject: str) -> Any:
    raise PermissionError("SMTP 535: authentication failed")


def resize_image(path: str, width: int) -> Any:
    raise ValueError(f"unsupported image format: {Path(path).suffix}")


def check_inventory(sku: str) -> Any:
    return {"status": "unknown"}


def check_warehouse(sku: str) -> Any:
    return {"status": "unknown"}


def search_docs(query: str) -> Any:
    return []


TOOLS: dict[str, Callable[..., Any]] = {
    f.__name__: f
    for f in (
        get_weather,
        list_invoices,
        fetch_url,
        read_db,
        send_email,
        resize_image,
        check_inventory,
        check_warehouse,
        search_docs,
    )
}


def tool_definitions(names: list[str]) -> list[dict[str, Any]]:
    """OpenAI `tools` for the tools a scenario uses (all string/integer parameters)."""
    defs = []
    for name in names:
        fn = TOOLS[name]
        params = {
            p: {"type": "integer" if t in ("int", int) else "string"}
            for p, t in fn.__annotations__.items()
            if p != "return"
        }
        defs.append(
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": name.replace("_", " "),
                    "parameters": {
                        "type": "object",
                        "properties": params,
                        "required": list(params),
                    },
                },
            }
        )
    return defs


# --- the agent loop -----------------------------------------------------------------------


def execute_tool(tracer: Tracer, tool_call: Any, capture: bool) -> str:
    """Run one requested tool in an `execute_tool <name>` span; return the tool message text."""
    name, arguments = tool_call.function.name, tool_call.function.arguments
    attributes = {
        GenAI.GEN_AI_OPERATION_NAME: GenAI.GenAiOperationNameValues.EXECUTE_TOOL.value,
        GenAI.GEN_AI_TOOL_NAME: name,
        GenAI.GEN_AI_TOOL_CALL_ID: tool_call.id,
        GenAI.GEN_AI_TOOL_TYPE: "function",
    }
    if capture:
        attributes[GenAI.GEN_AI_TOOL_CALL_ARGUMENTS] = arguments
    with tracer.start_as_current_span(
        f"execute_tool {name}",
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            result = TOOLS[name](**json.loads(arguments))
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, str(exc)))
            span.set_attribute(error_attributes.ERROR_TYPE, type(exc).__qualname__)
            return json.dumps({"error": str(exc)})
        result_text = json.dumps(result)
        if capture:
            span.set_attribute(GenAI.GEN_AI_TOOL_CALL_RESULT, result_text)
        return result_text


def ask_model(client: openai.OpenAI, messages: list[dict[str, Any]], tools: list[Any]) -> Any:
    """One model request, retried as is by the agent itself on a 429 (the client does not)."""
    for attempt in range(1, LLM_ATTEMPTS + 1):
        try:
            extra = {"tools": tools} if tools else {}
            return client.chat.completions.create(
                model=REQUEST_MODEL, messages=messages, temperature=0, **extra
            )
        except openai.RateLimitError:
            if attempt == LLM_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def run_agent(
    client: openai.OpenAI, tracer: Tracer, prompt: str, tool_names: list[str], capture: bool
) -> str:
    """Ask the model, run the tools it requests, append the results, ask again."""
    with tracer.start_as_current_span(
        f"invoke_agent {AGENT_NAME}",
        kind=SpanKind.INTERNAL,
        attributes={
            GenAI.GEN_AI_OPERATION_NAME: GenAI.GenAiOperationNameValues.INVOKE_AGENT.value,
            GenAI.GEN_AI_AGENT_NAME: AGENT_NAME,
        },
    ):
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a support agent. Use the tools."},
            {"role": "user", "content": prompt},
        ]
        tools = tool_definitions(tool_names)
        for _ in range(MAX_REQUESTS):
            response = ask_model(client, messages, tools)
            message = response.choices[0].message
            if not message.tool_calls:
                return message.content or ""
            messages.append(message.model_dump(exclude_none=True))
            for tool_call in message.tool_calls:
                content = execute_tool(tracer, tool_call, capture)
                messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": content})
        return ""


# --- the scenarios ------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    prompt: str
    tools: list[str]
    turns: list[Turn]
    story: str
    loop: str | None
    answer: str


def _scenarios() -> list[Scenario]:
    fetch = ("fetch_url", {"url": "https://example.com/report"})
    inventory = ("check_inventory", {"sku": "X1"})
    warehouse = ("check_warehouse", {"sku": "X1"})
    search = ("search_docs", {"query": "refund policy"})
    return [
        Scenario(
            "healthy_multiturn",
            "Compare the weather in Oslo and Bergen.",
            ["get_weather"],
            [
                calls(("get_weather", {"city": "Oslo"})),
                calls(("get_weather", {"city": "Bergen"})),
                text("Oslo has 4°C and light rain; Bergen has 7°C and is overcast."),
            ],
            "The agent looks up the weather in Oslo, then in Bergen, and answers with a comparison.",
            None,
            "Oslo has 4°C and light rain; Bergen has 7°C and is overcast.",
        ),
        Scenario(
            "paging",
            "List all my invoices.",
            ["list_invoices"],
            [
                calls(("list_invoices", {"page": 1})),
                calls(("list_invoices", {"page": 2})),
                calls(("list_invoices", {"page": 3})),
                text("You have 5 invoices: INV-1001 to INV-1005."),
            ],
            "The agent pages through list_invoices (pages 1, 2 and 3, each with different "
            "invoices) and answers with the five invoices.",
            None,
            "You have 5 invoices: INV-1001 to INV-1005.",
        ),
        Scenario(
            "retry_storm",
            "Fetch the report at https://example.com/report and summarise it.",
            ["fetch_url"],
            [calls(fetch)] * 5 + [text("I could not fetch the report.")],
            "The agent calls fetch_url with identical arguments five times in a row, each call "
            "failing with HTTP 503, then answers that it could not fetch the report.",
            "retry storm: fetch_url(url=https://example.com/report) 5 times in a row with "
            "identical arguments, failing each time with the same error (HTTP 503)",
            "I could not fetch the report.",
        ),
        Scenario(
            "distinct_errors",
            "Read the customer table, email the summary and make a thumbnail of the logo.",
            ["read_db", "send_email", "resize_image"],
            [
                calls(("read_db", {"table": "customers"})),
                calls(("send_email", {"to": "ops@example.com", "subject": "Customer summary"})),
                calls(("resize_image", {"path": "logo.heic", "width": 128})),
                text(
                    "All three steps failed: the database timed out, SMTP refused the login "
                    "and the logo's format is not supported."
                ),
            ],
            "The agent calls three different tools in three turns (read_db, send_email, "
            "resize_image), each failing with a different error, then answers with what failed.",
            None,
            "All three steps failed: the database timed out, SMTP refused the login and the "
            "logo's format is not supported.",
        ),
        Scenario(
            "oscillation",
            "Is SKU X1 in stock?",
            ["check_inventory", "check_warehouse"],
            [calls(inventory), calls(warehouse)] * 3
            + [text("I could not determine whether X1 is in stock.")],
            "The agent alternates check_inventory and check_warehouse for SKU X1, three times "
            'each, always getting {"status": "unknown"}, then answers that it could not tell.',
            "oscillation: check_inventory(sku=X1) and check_warehouse(sku=X1) alternate, three "
            'times each, every call returning {"status": "unknown"}',
            "I could not determine whether X1 is in stock.",
        ),
        Scenario(
            "same_result",
            "What is the refund policy?",
            ["search_docs"],
            [calls(search)] * 4 + [text("I found no documentation on the refund policy.")],
            "The agent calls search_docs for 'refund policy' four times in a row, getting an "
            "empty list each time, then answers that it found nothing.",
            "retry storm with the same result: search_docs(query=refund policy) 4 times in a "
            "row with identical arguments, each returning []",
            "I found no documentation on the refund policy.",
        ),
        Scenario(
            "llm_rate_limited",
            "Say hello.",
            [],
            [RATE_LIMITED] * 3 + [text("Hello! How can I help you today?")],
            "The model endpoint answers the first three identical chat requests with HTTP 429, "
            "the agent retries the same request itself, and the fourth succeeds with a text answer.",
            "model retry storm that recovered: the identical chat request fails 3 times with "
            "HTTP 429 (RateLimitError) and succeeds on the 4th attempt",
            "Hello! How can I help you today?",
        ),
    ]


# --- recording ----------------------------------------------------------------------------


def sdk_versions() -> str:
    found = []
    for name in SDK_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name}=={metadata.version(name)}")
    return ", ".join(found)


def count(spans: list[ReadableSpan], scenario: Scenario, capture: bool, sdk: str) -> dict:
    def op(span: ReadableSpan) -> Any:
        return (span.attributes or {}).get(GenAI.GEN_AI_OPERATION_NAME)

    def total(key: str) -> int:
        return sum(int((s.attributes or {}).get(key, 0)) for s in spans)

    return {
        "sdk": sdk,
        "runs": len({s.context.trace_id for s in spans}),
        "steps": len(spans),
        "llm_spans": sum(op(s) == GenAI.GenAiOperationNameValues.CHAT.value for s in spans),
        "tool_spans": sum(
            op(s) == GenAI.GenAiOperationNameValues.EXECUTE_TOOL.value for s in spans
        ),
        "errors": sum(s.status.status_code is StatusCode.ERROR for s in spans),
        "input_tokens": total(GenAI.GEN_AI_USAGE_INPUT_TOKENS),
        "output_tokens": total(GenAI.GEN_AI_USAGE_OUTPUT_TOKENS),
        "content_captured": capture,
        "story": scenario.story,
        "loop": scenario.loop,
    }


def record(server: ScriptedServer, scenario: Scenario, capture: bool, sdk: str) -> dict:
    name = scenario.name if capture else f"{scenario.name}_nocontent"
    if capture:
        os.environ[CAPTURE_ENV] = "true"
    else:
        os.environ.pop(CAPTURE_ENV, None)

    resource = Resource.create({"service.name": "tracedesk-recorder"})
    spans_out = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans_out))
    logs_out = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs_out))
    meter_provider = MeterProvider(resource=resource)

    # openai-v2 reads the capture setting when it instruments, so instrument per recording.
    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(
        tracer_provider=tracer_provider,
        logger_provider=logger_provider,
        meter_provider=meter_provider,
    )
    try:
        server.load(scenario.name, scenario.turns)
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-local-scripted", max_retries=0)
        tracer = tracer_provider.get_tracer("tracedesk.tools.record.otel_genai")
        answer = run_agent(client, tracer, scenario.prompt, scenario.tools, capture)
        client.close()
    finally:
        instrumentor.uninstrument()
    tracer_provider.shutdown()
    logger_provider.shutdown()
    meter_provider.shutdown()

    if answer != scenario.answer or len(server.requests) != len(scenario.turns):
        raise SystemExit(f"{name}: the run did not follow its script ({answer!r})")

    spans = list(spans_out.get_finished_spans())
    logs = logs_out.get_finished_logs()
    with_content = sum(_log_has_content(entry.log_record.body) for entry in logs)
    check_default_path(name, spans, capture, len(logs), with_content)
    request = encode_spans(spans)
    data = request.SerializeToString()
    if ExportTraceServiceRequest.FromString(data) != request:
        raise SystemExit(f"{name}: the protobuf bytes do not read back")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.otlp.json").write_text(MessageToJson(request, indent=2) + "\n")
    (OUT / f"{name}.pb").write_bytes(data)
    counts = count(spans, scenario, capture, sdk)
    (OUT / f"{name}.counts.json").write_text(
        json.dumps(counts, indent=2, ensure_ascii=False) + "\n"
    )

    return {"name": name, **counts, "log_events": len(logs), "logs_with_content": with_content}


def check_default_path(
    name: str, spans: list[ReadableSpan], capture: bool, logs: int, with_content: int
) -> None:
    """Stop unless openai-v2 took its documented default path (see the pins above)."""
    chat = [s for s in spans if s.name.startswith("chat ")]
    problems = []
    if not chat or any(
        (s.attributes or {}).get(GenAI.GEN_AI_SYSTEM) != "openai"
        or GenAI.GEN_AI_PROVIDER_NAME in (s.attributes or {})
        for s in chat
    ):
        problems.append("chat spans are not on the semconv 1.30 path (gen_ai.system)")
    for s in chat:
        error_type = str((s.attributes or {}).get(error_attributes.ERROR_TYPE, ""))
        if error_type.startswith("<"):
            problems.append(f"error.type written as {error_type!r}")
    if logs == 0:
        problems.append("openai-v2 wrote no log events")
    if bool(with_content) != capture:
        problems.append(f"{with_content} of {logs} log events carry content (capture={capture})")
    if problems:
        raise SystemExit(f"{name}: " + "; ".join(problems))


def _log_has_content(body: Any) -> bool:
    """Whether an openai-v2 log event body carries message text or tool-call arguments."""
    if isinstance(body, dict):
        if "content" in body or "arguments" in body:
            return True
        return any(_log_has_content(v) for v in body.values())
    if isinstance(body, list | tuple):
        return any(_log_has_content(v) for v in body)
    return False


def main() -> int:
    # The default (semconv 1.30) path of openai-v2 is what is recorded: drop an opt-in that
    # would switch it to the experimental conventions (read when it first instruments).
    os.environ.pop("OTEL_SEMCONV_STABILITY_OPT_IN", None)
    sdk = sdk_versions()
    rows = []
    with ScriptedServer() as server:
        for scenario in _scenarios():
            for capture in (True, False):
                rows.append(record(server, scenario, capture, sdk))

    columns = [
        ("scenario", "name", 30),
        ("runs", "runs", 4),
        ("spans", "steps", 5),
        ("llm", "llm_spans", 4),
        ("tool", "tool_spans", 4),
        ("err", "errors", 4),
        ("in_tok", "input_tokens", 6),
        ("out_tok", "output_tokens", 7),
        ("content", "content_captured", 7),
        ("logs", "log_events", 4),
        ("logs+content", "logs_with_content", 12),
        ("loop", "loop", 0),
    ]
    print(f"wrote {len(rows) * 3} files to {OUT.relative_to(ROOT)}")
    print(f"sdk: {sdk}")
    print("  ".join(title.ljust(width) for title, _, width in columns).rstrip())
    for row in rows:
        cells = []
        for _, key, width in columns:
            value = row[key]
            if key == "loop":
                value = (value or "-").split(":")[0]
            cells.append(str(value).ljust(width))
        print("  ".join(cells).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
