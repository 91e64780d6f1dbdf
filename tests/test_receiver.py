"""Live capture: the OTLP/HTTP receiver fed by the real OpenTelemetry and Langfuse SDKs, on
real sockets (free ports), into real databases, compared with a file import of the same
spans; and what it answers to bodies it must refuse."""

from __future__ import annotations

import gzip
import http.client
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from tests.conftest import FIXTURES, snapshot
from tracedesk.core import live
from tracedesk.core.analysis.loops import Rules
from tracedesk.core.analysis.pricing import Pricing
from tracedesk.core.ingest import import_file
from tracedesk.core.live import LiveIngest, LiveServer
from tracedesk.core.receiver import PortTaken, Receiver, SpanQueue, decode, free_port
from tracedesk.core.store import Store

RECORDED = FIXTURES / "recorded"
RUN_COLUMNS = ("id, name, request, status, step_count, error_count, input_tokens,"
               " output_tokens, cached_input_tokens, reasoning_tokens, cache_creation_tokens,"
               " reported_cost, cost_pusd, unpriced_steps, incident_count, worst_severity,"
               " wasted_tokens, wasted_cost, start_ns, end_ns, models, tools")  # fmt: skip
STEP_COLUMNS = ("run_id, id, parent_id, depth, kind, name, status, model, input_tokens,"
                " output_tokens, cached_input_tokens, reported_cost, cost_pusd, cost_source,"
                " tool_name, input, output")  # fmt: skip


def content(db: Path) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Runs, steps and incidents as stored, without what says which import wrote them."""
    with Store(db) as store:
        runs = [tuple(r) for r in store.conn.execute(f"SELECT {RUN_COLUMNS} FROM runs ORDER BY id")]
        steps = [tuple(r) for r in store.conn.execute(
            f"SELECT {STEP_COLUMNS} FROM steps ORDER BY run_id, id")]  # fmt: skip
        incidents = [tuple(r) for r in store.conn.execute(
            "SELECT run_id, kind, severity, message, step_ids, wasted_cost FROM incidents"
            " ORDER BY run_id, kind, step_ids")]  # fmt: skip
    return runs, steps, incidents


def file_import(tmp_path: Path, spans, name: str) -> Path:
    """The same spans written as an OTLP protobuf file and imported into a fresh database."""
    path = tmp_path / f"{name}.pb"
    path.write_bytes(encode_spans(spans).SerializeToString())
    db = tmp_path / f"{name}-file.db"
    with Store(db) as store:
        import_file(store, path)
    return db


def agent_story(tracer, turns: int, flush=None) -> None:
    """An agent run with GenAI attributes: model calls, a tool that fails the same way each
    time (a retry storm), children ending (and exported) before their parent."""
    with tracer.start_as_current_span("invoke_agent support") as root:
        root.set_attribute("gen_ai.operation.name", "invoke_agent")
        root.set_attribute("gen_ai.input.messages", '[{"role": "user", "content": "fix it"}]')
        for turn in range(turns):
            with tracer.start_as_current_span("chat gpt-4o") as chat:
                chat.set_attribute("gen_ai.operation.name", "chat")
                chat.set_attribute("gen_ai.request.model", "gpt-4o")
                chat.set_attribute("gen_ai.usage.input_tokens", 300 + 50 * turn)
                chat.set_attribute("gen_ai.usage.output_tokens", 20 + turn)
            with tracer.start_as_current_span("execute_tool fetch_url") as tool:
                tool.set_attribute("gen_ai.operation.name", "execute_tool")
                tool.set_attribute("gen_ai.tool.name", "fetch_url")
                tool.set_attribute("gen_ai.tool.call.arguments", '{"url": "https://x.test/a"}')
                tool.set_status(Status(StatusCode.ERROR, "HTTP 503"))
            if flush is not None:
                flush()


def provider_with(exporter, memory: InMemorySpanExporter):
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=50))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_sdk_protobuf_exporter_matches_file_import(tmp_path: Path, compression: str) -> None:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    live_db = tmp_path / "live.db"
    memory = InMemorySpanExporter()
    # A short quiet time: runs are analysed between flushes, before their root span arrives.
    with LiveServer(live_db, port=0, quiet_s=0.05) as server:
        exporter = OTLPSpanExporter(endpoint=server.url, compression=Compression(
            "gzip" if compression == "gzip" else "none"))  # fmt: skip
        provider = provider_with(exporter, memory)
        tracer = provider.get_tracer("test")

        def flush() -> None:
            provider.force_flush()
            time.sleep(0.3)  # quiet: the run is analysed without its root

        for _ in range(3):
            agent_story(tracer, turns=4, flush=flush)
        provider.shutdown()
        assert server.ingest.settled > 3  # analysed while arriving, not only at the end
    spans = memory.get_finished_spans()
    assert len(spans) == 3 * (1 + 4 * 2)
    live = content(live_db)
    expected = content(file_import(tmp_path, spans, "sdk"))
    assert live == expected
    runs = live[0]
    assert len(runs) == 3 and all(r[4] == 9 and r[6] == 1500 and r[12] for r in runs)
    assert all(r[14] >= 1 for r in runs)  # the retry storm was found in each
    assert not server.errors


def test_sdk_json_exporter_matches_file_import(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter

    live_db = tmp_path / "live.db"
    memory = InMemorySpanExporter()
    with LiveServer(live_db, port=0) as server:
        provider = provider_with(OTLPSpanExporter(endpoint=server.url), memory)
        agent_story(provider.get_tracer("test"), turns=3)
        provider.shutdown()
        assert server.receiver.stats.spans == 7 and server.receiver.stats.errors == 0
    assert content(live_db) == content(file_import(tmp_path, memory.get_finished_spans(), "j"))


def test_langfuse_sdk_matches_file_import(tmp_path: Path) -> None:
    import langfuse

    live_db = tmp_path / "live.db"
    memory = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    with LiveServer(live_db, port=0) as server:
        # Pointed at tracedesk by its base URL alone: it posts to /api/public/otel/v1/traces.
        client = langfuse.Langfuse(
            public_key=f"pk-lf-{uuid.uuid4().hex}", secret_key="sk-lf-test",
            base_url=f"http://{server.address}", tracer_provider=provider, flush_interval=0.05,
        )  # fmt: skip
        with client.start_as_current_observation(as_type="agent", name="weather-agent") as agent:
            agent.update(input={"question": "Weather in Oslo?"})
            with client.start_as_current_observation(
                as_type="generation", name="chat", model="gpt-4o-2024-08-06",
                input=[{"role": "user", "content": "Weather in Oslo?"}],
            ) as generation:  # fmt: skip
                generation.update(
                    output={"role": "assistant", "content": "4°C, light rain"},
                    usage_details={"input": 150, "input_cached_tokens": 256, "output": 18},
                    cost_details={"input": 0.000375, "input_cached_tokens": 0.00032,
                                  "output": 0.00018, "total": 0.000875},
                )  # fmt: skip
            with client.start_as_current_observation(as_type="tool", name="get_weather") as tool:
                tool.update(input={"city": "Oslo"}, output={"temp_c": 4})
        client.flush()
        client.shutdown()
        wait_for(lambda: server.receiver.stats.spans >= 3)
        assert server.receiver.stats.errors == 0
    spans = memory.get_finished_spans()
    assert len(spans) == 3
    live = content(live_db)
    assert live == content(file_import(tmp_path, spans, "lf"))
    (run,) = live[0]
    assert run[1] == "weather-agent" and run[6] == 150 + 256 and run[11] == "0.000875"


def post(address: str, body: bytes, content_type: str | None = "application/x-protobuf",
         path: str = "/v1/traces", headers: dict[str, str] | None = None,
         method: str = "POST") -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        all_headers = dict(headers or {})
        if content_type is not None:
            all_headers["Content-Type"] = content_type
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def announce(address: str, length: int) -> tuple[int, dict[str, str], bytes]:
    """Headers announcing a body that never comes: the answer must come without it."""
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.putrequest("POST", "/v1/traces")
        connection.putheader("Content-Type", "application/x-protobuf")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_refused_bodies_get_their_status_and_change_nothing(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    db = tmp_path / "live.db"
    good = (RECORDED / "otel-genai" / "paging.pb").read_bytes()
    with Store(db) as store:
        import_file(store, FIXTURES / "formats" / "otlp_genai.jsonl")
        before = snapshot(store)
    bomb = gzip.compress(b"\x00" * (200 << 20))  # 200 MB inflated, ~200 KB sent
    assert len(bomb) < 512 * 1024
    with LiveServer(db, port=0, max_body=512 * 1024) as server:
        address = server.address
        cases = [
            (400, post(address, b"\x0a\xff\xff\xff\x0fnot protobuf")),
            (400, post(address, b'{"resourceSpans": [', "application/json")),
            (400, post(address, b'["not", "a", "request"]', "application/json")),
            (400, post(address, b"\x1f\x8b broken gzip", headers={"Content-Encoding": "gzip"})),
            (413, post(address, b"\x0a" * (600 * 1024))),  # over the limit: read, dropped
            (413, announce(address, 1 << 30)),  # far over: not even read
            (413, post(address, bomb, headers={"Content-Encoding": "gzip"})),
            (415, post(address, good, "text/plain")),
            (415, post(address, good, None)),
            (415, post(address, good, headers={"Content-Encoding": "br"})),
            (404, post(address, good, path="/v1/metrics")),
            (405, post(address, b"", method="GET")),
        ]
        for expected, (status, headers, body) in cases:
            assert status == expected, (expected, status, body)
            assert headers["Content-Type"] in ("application/x-protobuf", "application/json")
        # The error body is a google.rpc.Status: code 3 (INVALID_ARGUMENT) and a message.
        status, _, body = post(address, b'{"resourceSpans": [', "application/json")
        assert orjson.loads(body)["code"] == 3 and "malformed JSON" in orjson.loads(body)["message"]
        status, headers, body = post(address, b"\x0a\x05junk!")
        assert status == 400 and body[:1] == b"\x08" and b"ExportTraceServiceRequest" in body
        assert server.receiver.stats.errors == len(cases) + 2
    with Store(db) as store:
        assert snapshot(store) == before
    # An empty request is a valid one: 200 and an empty response.
    with LiveServer(db, port=0) as server:
        status, headers, body = post(server.address, b"")
        assert status == 200 and ExportTraceServiceResponse.FromString(body) == (
            ExportTraceServiceResponse())  # fmt: skip


def test_partial_success_counts_rejected_spans(tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    request = orjson.loads((RECORDED / "otel-genai" / "paging.otlp.json").read_bytes())
    spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
    total = sum(len(s["spans"]) for r in request["resourceSpans"] for s in r["scopeSpans"])
    spans[0]["spanId"] = ""  # cannot be mapped: rejected, the others are kept
    spans[1]["startTimeUnixNano"] = "yesterday"
    db = tmp_path / "live.db"
    with LiveServer(db, port=0) as server:
        status, headers, body = post(server.address, orjson.dumps(request), "application/json")
        assert status == 200 and headers["Content-Type"] == "application/json"
        partial = orjson.loads(body)["partialSuccess"]
        assert partial["rejectedSpans"] == "2" and "span 1" in partial["errorMessage"]
        protobuf = (RECORDED / "otel-genai" / "paging.pb").read_bytes()
        status, _, body = post(server.address, gzip.compress(protobuf),
                               headers={"Content-Encoding": "gzip"})  # fmt: skip
        assert status == 200
        assert not ExportTraceServiceResponse.FromString(body).HasField("partial_success")
    with Store(db) as store:
        assert store.counts()["steps"] == total  # the protobuf request brought the 2 back


def test_resent_spans_change_nothing(tmp_path: Path) -> None:
    body = (RECORDED / "otel-genai" / "retry_storm.pb").read_bytes()
    db = tmp_path / "live.db"
    with LiveServer(db, port=0, quiet_s=0.05) as server:
        assert post(server.address, body)[0] == 200
        wait_for(lambda: server.ingest.settled == 1)
    with Store(db) as store:
        first = content(db)
        imports = store.counts()
    with LiveServer(db, port=0, quiet_s=0.05) as server:
        for _ in range(3):  # a retrying exporter, to a restarted receiver
            assert post(server.address, body)[0] == 200
        wait_for(lambda: server.ingest.result.skipped == 3 * len(first[1]))
        assert server.ingest.result.steps == 0 and not server.ingest.dirty
    assert content(db) == first
    with Store(db) as store:
        assert store.counts()["steps"] == imports["steps"]
    file_db = tmp_path / "file.db"
    with Store(file_db) as store:
        import_file(store, RECORDED / "otel-genai" / "retry_storm.pb")
    assert content(file_db) == first


def test_full_queue_answers_503_with_retry_after(tmp_path: Path) -> None:
    body = (RECORDED / "otel-genai" / "paging.pb").read_bytes()
    queue = SpanQueue(capacity=1)
    receiver = Receiver(queue, port=0).start()
    try:
        assert post(receiver.address, body)[0] == 200  # queued: the queue is now full
        status, headers, _ = post(receiver.address, body)
        assert status == 503 and headers["Retry-After"] == "1"
        queue.take()
        assert post(receiver.address, body)[0] == 200
    finally:
        receiver.stop()


def test_stop_writes_every_acknowledged_span(tmp_path: Path) -> None:
    """Acknowledged spans still queued when the server stops are written before it returns."""
    body = (RECORDED / "otel-genai" / "healthy_multiturn.pb").read_bytes()
    db = tmp_path / "live.db"
    server = LiveServer(db, port=0, quiet_s=60)
    server.receiver.start()  # the receiver alone: spans queue up, nothing writes them yet
    assert post(server.address, body)[0] == 200
    assert server.queue.pending > 0
    server.start_writer()
    server.stop()
    file_db = tmp_path / "file.db"
    with Store(file_db) as store:
        import_file(store, RECORDED / "otel-genai" / "healthy_multiturn.pb")
    assert content(db) == content(file_db)


def test_port_taken_is_reported_and_another_offered() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortTaken, match=f"port {port} on 127.0.0.1 is already in use"):
            Receiver(SpanQueue(), port=port)
        other = free_port("127.0.0.1", port)
        assert other != port
        Receiver(SpanQueue(), port=other).stop()


def serve(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tracedesk", "--db", str(tmp_path / "serve.db"), "serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_serve_command_port_taken_and_shutdown(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve(tmp_path, "--port", str(port))
        _, err = process.communicate(timeout=60)
        assert process.returncode == 1
        assert f"port {port} on 127.0.0.1 is already in use" in err and "--port" in err
        assert "Traceback" not in err
    port = free_port()
    process = serve(tmp_path, "--port", str(port))
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert f"http://127.0.0.1:{port}/v1/traces" in line
        body = (RECORDED / "otel-genai" / "paging.pb").read_bytes()
        assert post(f"127.0.0.1:{port}", body)[0] == 200
    finally:
        process.send_signal(2)  # Ctrl+C: what was acknowledged is written, then it exits
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    with Store(tmp_path / "serve.db") as store:
        assert store.counts()["runs"] == 1 and store.counts()["steps"] > 1


def test_serve_warns_when_not_loopback(tmp_path: Path) -> None:
    process = serve(tmp_path, "--host", "0.0.0.0", "--port", str(free_port("0.0.0.0")))
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("Listening for OTLP/HTTP traces on http://0.0.0.0:")
    finally:
        process.send_signal(2)
        _, err = process.communicate(timeout=60)
    assert "warning" in err and "0.0.0.0" in err


# -- the writer: runs analysed from the steps kept in memory -------------------------------


def story_spans(runs: int = 3, turns: int = 4) -> list:
    memory = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for _ in range(runs):
        agent_story(tracer, turns)
    provider.shutdown()
    return list(memory.get_finished_spans())


def received(spans) -> list:
    """The records the receiver queues for these spans (fresh objects each time)."""
    return list(decode(encode_spans(spans).SerializeToString(), "protobuf").records)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def live_ingest(clock: Clock) -> LiveIngest:
    return LiveIngest("live capture on test", Pricing.load(), Rules.load(), quiet_s=1, clock=clock)


def arrive_in_parts(ingest: LiveIngest, clock: Clock, db: Path, spans: list) -> None:
    """Runs arriving in three parts cut across them (children before their root), each
    part settled before the next, every part sent again later (a retrying exporter)."""
    parts = [spans[:7], spans[7:19], spans[19:]]
    with Store(db) as store:
        for n, part in enumerate(parts):
            ingest.write(store, received(part))
            if n:
                assert ingest.write(store, received(parts[n - 1])).steps == 0  # re-sent
            clock.now += 2
            assert ingest.settle(store)
        assert ingest.write(store, received(spans)).steps == 0
        assert not ingest.settle(store, force=True)


def test_runs_arriving_over_batches_analysed_from_memory_match_file_import(tmp_path: Path) -> None:
    spans = story_spans()
    clock = Clock()
    ingest = live_ingest(clock)
    arrive_in_parts(ingest, clock, tmp_path / "live.db", spans)
    assert content(tmp_path / "live.db") == content(file_import(tmp_path, spans, "file"))
    assert ingest.settled >= 5 and ingest.read_back == 0  # every analysis from memory
    assert ingest.result.steps == len(spans)


def test_runs_evicted_from_memory_are_read_back(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(live, "KEPT_STEPS", 5)  # fewer than a run: every run is evicted
    spans = story_spans()
    clock = Clock()
    ingest = live_ingest(clock)
    arrive_in_parts(ingest, clock, tmp_path / "live.db", spans)
    assert content(tmp_path / "live.db") == content(file_import(tmp_path, spans, "file"))
    assert ingest.read_back > 0 and ingest.kept_steps <= 5 + len(spans)


def test_runs_partly_stored_by_another_import_are_read_back(tmp_path: Path) -> None:
    """Steps the store had already (here from a file) are not the ones the writer kept."""
    spans = story_spans()
    db = tmp_path / "live.db"
    part = tmp_path / "part.pb"
    part.write_bytes(encode_spans(spans[5:15]).SerializeToString())
    with Store(db) as store:
        import_file(store, part)
    clock = Clock()
    ingest = live_ingest(clock)
    with Store(db) as store:
        ingest.write(store, received(spans))
        assert ingest.settle(store, force=True)
    assert content(db) == content(file_import(tmp_path, spans, "file"))
    assert ingest.read_back >= 1 and ingest.result.skipped == 10


def write_fails(ingest, store: Store, spans, monkeypatch) -> None:
    """A write of these spans that the database refuses partway (it rolls back)."""

    def refuse(*args):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "update_running_totals", refuse)
    with pytest.raises(sqlite3.OperationalError):
        ingest.write(store, received(spans))
    monkeypatch.undo()


def test_a_failed_write_keeps_nothing_so_the_spans_are_written_when_sent_again(
    tmp_path: Path, monkeypatch
) -> None:
    spans = story_spans(runs=1)
    clock = Clock()
    ingest = live_ingest(clock)
    db = tmp_path / "live.db"
    with Store(db) as store:
        ingest.write(store, received(spans[:4]))
        write_fails(ingest, store, spans, monkeypatch)
        assert ingest.write(store, received(spans)).steps == len(spans) - 4
        assert ingest.settle(store, force=True)
    assert content(db) == content(file_import(tmp_path, spans, "file"))


def test_a_failed_first_write_leaves_no_import_row_behind(tmp_path: Path, monkeypatch) -> None:
    """The session's imports row is made by its first write: when that write rolls back,
    the next one makes it again, and every step points at a row that exists."""
    spans = story_spans(runs=1)
    ingest = live_ingest(Clock())
    with Store(tmp_path / "live.db") as store:
        write_fails(ingest, store, spans, monkeypatch)
        assert ingest.import_id is None
        assert ingest.write(store, received(spans)).steps == len(spans)
        orphans = store.conn.execute(
            "SELECT count(*) FROM steps WHERE import_id NOT IN (SELECT id FROM imports)"
        ).fetchone()[0]
        assert (
            orphans == 0 and store.conn.execute("SELECT count(*) FROM imports").fetchone()[0] == 1
        )


def test_serve_stops_on_sigint_even_when_started_with_it_ignored(tmp_path: Path) -> None:
    """A background job of a script starts with SIGINT ignored; `kill -INT` stops it all
    the same, writing what it received."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tracedesk", "--db", str(tmp_path / "serve.db"), "serve",
         "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    try:
        assert "Listening for OTLP/HTTP traces" in (
            process.stdout.readline() if process.stdout else ""
        )
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "Stopping: writing the spans received" in err
