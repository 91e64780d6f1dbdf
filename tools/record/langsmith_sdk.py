"""Record what the real `langsmith` Python SDK sends to its backend, offline.

Writes under tests/fixtures/recorded/langsmith/. Nothing leaves 127.0.0.1: every scenario runs
in its own child process (`python langsmith_sdk.py --child <scenario> <variant>`), which starts a
small capture server on a free port in a thread and points the SDK at it with the ordinary
environment variables (LANGSMITH_ENDPOINT=http://127.0.0.1:<port>, LANGSMITH_API_KEY=lsv2-fake,
LANGSMITH_TRACING=true, LANGSMITH_PROJECT=tracedesk-recorder). The server answers `GET /info`
as a backend with multipart ingest and zstd compression enabled (`batch_ingest_config.
use_multipart_endpoint` and `instance_flags.zstd_compression_enabled` true; the SDK reads
nothing else of it), so the SDK takes its default path, `POST /runs/multipart` with a
zstd-compressed body; every other request would get a 200/202 `{}` (there are none). Each
request is kept as it arrived: method, path, headers and raw body.

The story is traced with public API only: nested `@traceable` functions (a "chain" root, "llm"
children that return what `wrap_openai` / `wrap_anthropic` would log, "tool" children), in
`tracing_context(client=...)`, then `Client.flush()`. The model answers are scripted; the tools
really run and really raise.

Every scenario is recorded twice, and agent_tools a third time, each in a fresh process (the
SDK decides on compression once per client, in the tracing thread Client() starts, after GET
/info returns; and it caches its environment look-ups):

    <scenario>                  SDK defaults, traced once the SDK has set up compression (as
                                in a process that has been up for a while): every request is
                                zstd-compressed multipart (Content-Encoding: zstd)
    <scenario>_uncompressed     LANGSMITH_DISABLE_RUN_COMPRESSION=true: plain multipart
    agent_tools_slow_info       SDK defaults, but GET /info is answered only after the first
                                model call: the runs traced until then go out uncompressed,
                                the rest compressed (what a short script on a slow network sends)

and for each writes

    <name>.multipart    the request bodies of POST /runs/multipart, decompressed, byte for
                        byte as the SDK built them, concatenated in the order received
                        (each starts with --<boundary> and ends with --<boundary>--\\r\\n)
    <name>.json         the same runs as LangSmith's batch-ingest JSON {"post": [...],
                        "patch": [...]}: one dict per `post.<id>` / `patch.<id>` part with its
                        `.inputs`, `.outputs`, `.events`, `.extra`, `.error`, `.serialized`
                        parts merged in under those keys, in the order received
    <name>.counts.json  what a reader must find in it, counted from the capture

Re-record (needs only PyPI; never reaches a real API):

    python3 -m venv /tmp/ls-rec && /tmp/ls-rec/bin/pip install ".[record-langsmith]"
    /tmp/ls-rec/bin/python tools/record/langsmith_sdk.py

The child runs in a temporary working directory (so the SDK's `git describe` finds no
repository and adds no `revision_id` from the recorder's checkout) with every other
LANGSMITH_* / LANGCHAIN_* variable removed from its environment. The script stops if a request
is not what the SDK is expected to send, or if the counts differ from the script.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "recorded" / "langsmith"
PROJECT = "tracedesk-recorder"
CREATED = 1_793_000_000  # fixed `created` in the scripted OpenAI responses
SDK_PACKAGES = (
    "langsmith",
    "requests",
    "requests-toolbelt",
    "orjson",
    "zstandard",
    "pydantic",
    "uuid-utils",
    "httpx2",
)
# variant suffix -> extra environment for the child
VARIANTS = {
    "": {},
    "_uncompressed": {"LANGSMITH_DISABLE_RUN_COMPRESSION": "true"},
    "_slow_info": {},
}
RECORDINGS = [
    ("agent_tools", ""),
    ("agent_tools", "_uncompressed"),
    ("agent_tools", "_slow_info"),
    ("anthropic_cache", ""),
    ("anthropic_cache", "_uncompressed"),
    ("tool_error", ""),
    ("tool_error", "_uncompressed"),
]
# What LangSmith's cloud answers on GET /info, as far as the SDK reads it.
INFO = {
    "version": "0.12.0",
    "license_expiration_time": None,
    "batch_ingest_config": {
        "use_multipart_endpoint": True,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 16,
        "scale_down_nempty_trigger": 4,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
    },
    "instance_flags": {"zstd_compression_enabled": True},
}
# Scripted latencies. The SDK's uncompressed queue closes a batch after 50 ms without a new
# op (and merges a run's post and patch when both are in one batch); its compressed buffer is
# sent after 0.5 s without one, or on flush(). These keep well clear of both thresholds, so
# every re-recording batches the same way.
MODEL_SECONDS = 0.3
TOOL_SECONDS = 0.01
SUB_PARTS = ("inputs", "outputs", "events", "extra", "error", "serialized")


# --- the capture server -------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class LocalServer:
    """An HTTP server on a free port of 127.0.0.1, serving from a thread inside ``with``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class CaptureServer(LocalServer):
    """Keeps every request in arrival order; answers like a LangSmith backend that accepts all."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.info_gate = threading.Event()  # GET /info is answered once this is set
        self.info_gate.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                if (self.headers.get("transfer-encoding") or "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _handle(self) -> None:
                body = self._body()
                with outer.lock:
                    outer.requests.append(
                        Request(self.command, self.path, list(self.headers.items()), body)
                    )
                path = self.path.split("?")[0]
                if self.command == "GET" and path == "/info":
                    outer.info_gate.wait(30)
                    status, answer = 200, INFO
                elif self.command == "POST" and path in ("/runs/multipart", "/runs/batch"):
                    status, answer = 202, {}
                else:
                    status, answer = 200, {}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(Handler)


# --- the scripted models ------------------------------------------------------------------


def openai_outputs(
    scenario: str,
    n: int,
    message: dict[str, Any],
    finish: str,
    prompt: int,
    completion: int,
    cached: int = 0,
) -> dict[str, Any]:
    """A chat.completion as `wrap_openai` logs it: `usage` replaced by `usage_metadata`."""
    details: dict[str, int] = {"cache_read": cached} if cached else {}
    return {
        "id": f"chatcmpl-{scenario}-{n:02d}",
        "object": "chat.completion",
        "created": CREATED + n,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_local_scripted",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage_metadata": {
            "input_tokens": prompt,  # OpenAI prompt_tokens: already includes cached tokens
            "output_tokens": completion,
            "total_tokens": prompt + completion,
            "input_token_details": details,
            "output_token_details": {},
        },
    }


def tool_call_message(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
        ],
    }


OPENAI_METADATA = {
    "ls_provider": "openai",
    "ls_model_type": "chat",
    "ls_model_name": "gpt-4o-2024-08-06",
    "ls_temperature": 0.0,
}
ANTHROPIC_METADATA = {
    "ls_provider": "anthropic",
    "ls_model_type": "chat",
    "ls_model_name": "claude-sonnet-4-5-20250929",
    "ls_max_tokens": 1024,
}


# --- the scenarios (run in the child, after the environment is set) -----------------------


class ServiceUnavailable(Exception):
    pass


def _scenarios(checkpoint: Any) -> dict[str, tuple[Any, str, dict[str, Any]]]:
    """name -> (run function, story, expected counts). Imports langsmith lazily.

    `checkpoint()` is called once in agent_tools, after the first model call has ended.
    """
    from langsmith import traceable
    from langsmith.run_helpers import get_current_run_tree

    def latency(seconds: float = TOOL_SECONDS) -> None:
        time.sleep(seconds)

    # a) agent_tools -------------------------------------------------------------------------
    turns_a = iter(
        [
            openai_outputs(
                "agent_tools",
                0,
                tool_call_message("call_agent_tools_00_0", "get_order", {"order_id": "A-1042"}),
                "tool_calls",
                300,
                20,
                cached=64,
            ),
            openai_outputs(
                "agent_tools",
                1,
                {
                    "role": "assistant",
                    "content": "Order A-1042 shipped on 3 March and arrives on 6 March.",
                },
                "stop",
                350,
                25,
            ),
        ]
    )

    @traceable(run_type="llm", name="ChatOpenAI", metadata=OPENAI_METADATA)
    def chat_openai(messages: list[dict[str, Any]], model: str, tools: list[Any]) -> dict:
        latency(MODEL_SECONDS)
        return next(turns_a)

    @traceable(run_type="tool", name="get_order")
    def get_order(order_id: str) -> dict:
        latency()
        return {"order_id": order_id, "status": "shipped", "shipped": "2026-03-03",
                "eta": "2026-03-06"}  # fmt: skip

    tools_a = [{"type": "function", "function": {"name": "get_order",
               "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                              "required": ["order_id"]}}}]  # fmt: skip

    @traceable(run_type="chain", name="support_agent")
    def support_agent(question: str) -> dict:
        run = get_current_run_tree()
        if run is not None:
            run.add_metadata({"thread_id": "thread-agent-tools-0001"})
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a support agent. Use the tools."},
            {"role": "user", "content": question},
        ]
        while True:
            out = chat_openai(messages, "gpt-4o", tools_a)
            if len(messages) == 2:
                checkpoint()
            message = out["choices"][0]["message"]
            messages.append(message)
            if not message.get("tool_calls"):
                return {"answer": message["content"]}
            for call in message["tool_calls"]:
                result = get_order(**json.loads(call["function"]["arguments"]))
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result)}
                )

    # b) anthropic_cache ---------------------------------------------------------------------
    @traceable(run_type="llm", name="ChatAnthropic", metadata=ANTHROPIC_METADATA)
    def chat_anthropic(messages: list[dict[str, Any]], system: list[dict[str, Any]]) -> dict:
        latency(MODEL_SECONDS)
        # Anthropic's own usage: input_tokens 120 (uncached), cache_read_input_tokens 1800,
        # cache_creation_input_tokens 200. As in LangChain (and wrap_anthropic), input_tokens
        # in usage_metadata is the total, cache included.
        return {
            "id": "msg_anthropic_cache_00",
            "role": "assistant",
            "model": "claude-sonnet-4-5-20250929",
            "content": [
                {"type": "text", "text": "Clause 4.2 limits liability to 12 months of fees."}
            ],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage_metadata": {
                "input_tokens": 2120,
                "output_tokens": 85,
                "total_tokens": 2205,
                "input_token_details": {"cache_read": 1800, "cache_creation": 200},
            },
        }

    def anthropic_cache() -> None:
        chat_anthropic(
            [{"role": "user", "content": "What does clause 4.2 say about liability?"}],
            [{"type": "text", "text": "<contract text>", "cache_control": {"type": "ephemeral"}}],
        )

    # c) tool_error --------------------------------------------------------------------------
    turns_c = iter(
        [
            openai_outputs(
                "tool_error",
                0,
                {"role": "assistant", "content": "I could not fetch the report (HTTP 503)."},
                "stop",
                410,
                18,
            )
        ]
    )

    @traceable(run_type="llm", name="ChatOpenAI", metadata=OPENAI_METADATA)
    def chat_openai_c(messages: list[dict[str, Any]], model: str) -> dict:
        latency(MODEL_SECONDS)
        return next(turns_c)

    @traceable(run_type="tool", name="fetch_url")
    def fetch_url(url: str) -> str:
        latency()
        raise ServiceUnavailable("HTTP 503: Service Unavailable")

    @traceable(run_type="chain", name="report_agent")
    def report_agent(url: str) -> dict:
        try:
            fetch_url(url)
            note = "fetched"
        except ServiceUnavailable as exc:
            note = f"fetch_url failed: {exc}"
        out = chat_openai_c(
            [
                {"role": "user", "content": f"Summarise the report at {url}."},
                {"role": "system", "content": note},
            ],
            "gpt-4o",
        )
        return {"answer": out["choices"][0]["message"]["content"]}

    return {
        "agent_tools": (
            lambda: support_agent("Where is my order A-1042?"),
            "The support_agent chain asks gpt-4o (300 input tokens, 64 of them cached, 20 "
            "output), runs the get_order tool it asks for, asks again (350 in, 25 out) and "
            "answers.",
            {"runs": 1, "steps": 4, "llm_spans": 2, "tool_spans": 1, "errors": 0,
             "input_tokens": 650, "output_tokens": 45, "cached_input_tokens": 64,
             "cache_creation_tokens": 0, "models": ["gpt-4o-2024-08-06"]},
        ),
        "anthropic_cache": (
            anthropic_cache,
            "A single Claude Sonnet 4.5 llm run whose 2120 input tokens include 1800 read from "
            "and 200 written to the prompt cache, with 85 output tokens.",
            {"runs": 1, "steps": 1, "llm_spans": 1, "tool_spans": 0, "errors": 0,
             "input_tokens": 2120, "output_tokens": 85, "cached_input_tokens": 1800,
             "cache_creation_tokens": 200, "models": ["claude-sonnet-4-5-20250929"]},
        ),
        "tool_error": (
            lambda: report_agent("https://example.com/report"),
            "The report_agent chain calls the fetch_url tool, which raises HTTP 503 (the error "
            "is caught in the chain), then asks gpt-4o (410 in, 18 out) and answers.",
            {"runs": 1, "steps": 3, "llm_spans": 1, "tool_spans": 1, "errors": 1,
             "input_tokens": 410, "output_tokens": 18, "cached_input_tokens": 0,
             "cache_creation_tokens": 0, "models": ["gpt-4o-2024-08-06"]},
        ),
    }  # fmt: skip


# --- decoding what was captured -----------------------------------------------------------


def boundary_of(content_type: str) -> str:
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match or not content_type.startswith("multipart/form-data"):
        raise SystemExit(f"not a multipart body: {content_type!r}")
    return match.group(1)


def decompress(request: Request) -> bytes:
    encoding = (request.header("content-encoding") or "").lower()
    if not encoding:
        return request.body
    if encoding != "zstd":
        raise SystemExit(f"unexpected Content-Encoding {encoding!r}")
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(
        io.BytesIO(request.body), read_across_frames=True
    )
    return reader.read()


@dataclass
class Part:
    name: str
    headers: dict[str, str]
    body: bytes


def split_multipart(body: bytes, boundary: str) -> list[Part]:
    """Parse one multipart/form-data body strictly (CRLF, closing delimiter last)."""
    delimiter = b"--" + boundary.encode()
    if not body.startswith(delimiter + b"\r\n"):
        raise SystemExit("multipart body does not start with its boundary")
    if not body.endswith(delimiter + b"--\r\n"):
        raise SystemExit("multipart body does not end with the closing boundary")
    chunks = body[: -len(delimiter + b"--\r\n")].split(delimiter + b"\r\n")
    parts = []
    for chunk in chunks[1:]:
        if not chunk.endswith(b"\r\n"):
            raise SystemExit("multipart part does not end with CRLF")
        head, _, data = chunk[:-2].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
        name = re.search(r'name="([^"]+)"', headers.get("Content-Disposition", ""))
        if not name:
            raise SystemExit(f"multipart part without a name: {headers}")
        if "Content-Length" in headers and int(headers["Content-Length"]) != len(data):
            raise SystemExit(f"{name.group(1)}: Content-Length does not match the body")
        parts.append(Part(name.group(1), headers, data))
    return parts


def to_batch_json(parts: list[Part]) -> dict[str, list[dict[str, Any]]]:
    """The parts as {"post": [...], "patch": [...]}, sub-parts merged into their run."""
    out: dict[str, list[dict[str, Any]]] = {"post": [], "patch": []}
    runs: dict[tuple[str, str], dict[str, Any]] = {}
    for part in parts:
        pieces = part.name.split(".")
        if pieces[0] not in ("post", "patch"):
            raise SystemExit(f"unexpected multipart part {part.name!r}")
        if part.headers.get("Content-Type") != "application/json":
            raise SystemExit(f"{part.name}: Content-Type {part.headers.get('Content-Type')!r}")
        value = json.loads(part.body)
        key = (pieces[0], pieces[1])
        if len(pieces) == 2:
            if key in runs:
                raise SystemExit(f"{part.name} sent twice")
            runs[key] = value
            out[pieces[0]].append(value)
        elif len(pieces) == 3 and pieces[2] in SUB_PARTS and key in runs:
            runs[key][pieces[2]] = value
        else:
            raise SystemExit(f"unexpected multipart part {part.name!r}")
    return out


def merged_runs(batch: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Each run as the backend would end up with it: the post updated by its patches."""
    runs: dict[str, dict[str, Any]] = {}
    for op in ("post", "patch"):
        for run in batch[op]:
            merged = runs.setdefault(run["id"], {})
            merged.update({k: v for k, v in run.items() if v is not None})
    return runs


def usage_of(run: dict[str, Any]) -> dict[str, Any]:
    outputs = run.get("outputs") or {}
    meta = ((run.get("extra") or {}).get("metadata")) or {}
    usage = outputs.get("usage_metadata") or meta.get("usage_metadata")
    if outputs.get("usage_metadata") and meta.get("usage_metadata") != outputs["usage_metadata"]:
        raise SystemExit(f"run {run['id']}: outputs and metadata usage differ")
    return usage or {}


def count(batch: dict[str, list[dict[str, Any]]], sdk: str, story: str) -> dict[str, Any]:
    runs = merged_runs(batch)
    llm = [r for r in runs.values() if r.get("run_type") == "llm"]

    def detail(run: dict[str, Any], *keys: str) -> int:
        details = usage_of(run).get("input_token_details") or {}
        return sum(int(details.get(k) or 0) for k in keys)

    models = set()
    for run in llm:
        meta = ((run.get("extra") or {}).get("metadata")) or {}
        name = meta.get("ls_model_name") or (run.get("outputs") or {}).get("model")
        if name:
            models.add(name)
    return {
        "sdk": sdk,
        "runs": len({r["trace_id"] for r in runs.values()}),
        "steps": len(runs),
        "llm_spans": len(llm),
        "tool_spans": sum(r.get("run_type") == "tool" for r in runs.values()),
        "errors": sum(bool(r.get("error")) for r in runs.values()),
        "input_tokens": sum(int(usage_of(r).get("input_tokens") or 0) for r in llm),
        "output_tokens": sum(int(usage_of(r).get("output_tokens") or 0) for r in llm),
        "cached_input_tokens": sum(detail(r, "cache_read") for r in llm),
        "cache_creation_tokens": sum(
            detail(r, "cache_creation", "ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens")
            for r in llm
        ),
        "models": sorted(models),
        "content_captured": True,
        "story": story,
        "loop": None,
    }


def sdk_versions() -> str:
    found = []
    for name in SDK_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found.append(f"{name}=={metadata.version(name)}")
    found.append(f"Python {sys.version.split()[0]}")
    return ", ".join(found)


# --- the child: one scenario, one variant, one process ------------------------------------


def wait_until_compressing(client: Any) -> None:
    """Wait until the SDK's tracing thread has read GET /info and set up zstd compression.

    The SDK decides in a background thread started by Client(), after GET /info returns; ops
    traced before then go through its uncompressed queue. `compressed_traces` is internal:
    the recorder only reads it to know when that decision has been made.
    """
    deadline = time.monotonic() + 30
    while getattr(client, "compressed_traces", None) is None:
        if time.monotonic() > deadline:
            raise SystemExit("the SDK never switched to compressed ingestion")
        time.sleep(0.005)


def child(scenario: str, variant: str) -> int:
    with CaptureServer() as server:
        client_box: list[Any] = []
        if variant == "_slow_info":
            # GET /info is answered only after the first model call has ended, as when the
            # network round-trip to the backend is slower than the start of the program.
            server.info_gate.clear()

        def checkpoint() -> None:
            if variant == "_slow_info":
                server.info_gate.set()
                wait_until_compressing(client_box[0])

        os.environ.update(
            {
                "LANGSMITH_ENDPOINT": server.url,
                "LANGSMITH_API_KEY": "lsv2-fake",
                "LANGSMITH_TRACING": "true",
                "LANGSMITH_PROJECT": PROJECT,
                **VARIANTS[variant],
            }
        )
        from langsmith import Client, tracing_context

        run, story, expected = _scenarios(checkpoint)[scenario]
        client = Client()
        client_box.append(client)
        if variant == "":
            wait_until_compressing(client)  # as in a process that has been up for a while
        with tracing_context(client=client):
            run()
        client.flush()
        time.sleep(0.6)  # anything the SDK's threads would still send
        client.flush()
        with server.lock:
            requests = list(server.requests)

    name = scenario + variant
    ingest = [r for r in requests if r.method == "POST" and r.path.startswith("/runs")]
    other = [r for r in requests if r not in ingest]
    if [(r.method, r.path) for r in other] != [("GET", "/info")]:
        raise SystemExit(f"{name}: unexpected requests {[(r.method, r.path) for r in other]}")
    encodings = [r.header("content-encoding") for r in ingest]
    wanted = {
        "": lambda e: set(e) == {"zstd"},
        "_uncompressed": lambda e: set(e) == {None},
        "_slow_info": lambda e: e[0] is None and "zstd" in e,
    }[variant]
    if not ingest or not wanted(encodings):
        raise SystemExit(f"{name}: Content-Encoding of the requests: {encodings}")
    bodies, parts, summary = [], [], []
    for request in ingest:
        if request.path != "/runs/multipart":
            raise SystemExit(f"{name}: the SDK used {request.path} (not multipart)")
        body = decompress(request)
        bodies.append(body)
        these = split_multipart(body, boundary_of(request.header("content-type") or ""))
        parts.extend(these)
        ops = [p.name.split(".")[0] for p in these if p.name.count(".") == 1]
        summary.append(
            f"{request.header('content-encoding') or 'plain'}"
            f"[{ops.count('post')} post, {ops.count('patch')} patch]"
        )
    batch = to_batch_json(parts)
    sdk = sdk_versions()
    counts = count(batch, sdk, story)
    got = {k: counts[k] for k in expected}
    if got != expected:
        raise SystemExit(f"{name}: captured {got}, scripted {expected}")

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.multipart").write_bytes(b"".join(bodies))
    (OUT / f"{name}.json").write_text(json.dumps(batch, indent=2, ensure_ascii=False) + "\n")
    (OUT / f"{name}.counts.json").write_text(
        json.dumps(counts, indent=2, ensure_ascii=False) + "\n"
    )
    print(json.dumps({"name": name, "counts": counts, "requests": summary}))
    return 0


# --- the parent ---------------------------------------------------------------------------


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else "")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH_", "LANGCHAIN_")) and k not in ("OTEL_ENABLED",)
    }
    rows = []
    for scenario, variant in RECORDINGS:
        with tempfile.TemporaryDirectory() as cwd:
            done = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--child", scenario, variant],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
            )
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            raise SystemExit(f"{scenario}{variant}: the child failed")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))

    print(f"wrote {len(rows) * 3} files to {OUT.relative_to(ROOT)}")
    print(f"sdk: {rows[0]['counts']['sdk']}")
    keys = ["runs", "steps", "llm_spans", "tool_spans", "errors", "input_tokens",
            "output_tokens", "cached_input_tokens", "cache_creation_tokens"]  # fmt: skip
    print(
        "  ".join(["scenario".ljust(28), *(k[:6].ljust(6) for k in keys), "POST /runs/multipart"])
    )
    for row in rows:
        cells = [row["name"].ljust(28), *(str(row["counts"][k]).ljust(6) for k in keys)]
        print("  ".join([*cells, ", ".join(row["requests"])]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
