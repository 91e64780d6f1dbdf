"""Live capture under load: the real OpenTelemetry SDK exporter against `tracedesk serve`.

The receiver (``LiveServer``: the HTTP server, its queue and its single writer) runs in a
process of its own on 127.0.0.1 with a fresh database. This process builds the spans with
the real SDK (GenAI attributes, 20 spans a trace), then sends them in 512-span batches with
the SDK's ``OTLPSpanExporter`` (HTTP/protobuf), from a few threads, a bounded number of
requests. It prints:

- the request latency, p50 and p99, per 512-span batch (encoding excluded: the exporter's
  HTTP round trip, as ``export`` spends it after ``encode_spans``);
- spans/s acknowledged, and spans/s sustained (until every span is in the database);
- the receiving process's CPU time per span (until it has stopped, every run analysed) and
  its peak RSS;
- the file-import rate of the same spans (one OTLP protobuf file, ``import_file``), measured
  in the same run.

Both sides are measured warm: the clock starts once a warm-up request is written, and the
file import once the price catalogue is loaded.

    .venv/bin/python bench/receiver_bench.py [--spans 100000] [--threads 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BATCH = 512
SPANS_PER_TRACE = 20


def serve_child(db: str, pipe: Any) -> None:
    from tracedesk.core.live import LiveServer

    server = LiveServer(db, port=0).start()
    pipe.send(server.address)
    pipe.recv()  # the warm-up is written: the clock starts
    cpu = os.times()
    pipe.recv()  # told to stop
    started = time.perf_counter()
    server.stop()
    stats, end = server.receiver.stats, os.times()
    pipe.send({"stop_s": time.perf_counter() - started, "spans": stats.spans,
               "errors": stats.errors, "written": server.written, "write_errors": server.errors,
               "cpu_s": end.user + end.system - cpu.user - cpu.system,
               "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})  # fmt: skip


def make_spans(count: int) -> list:
    from opentelemetry.sdk import trace as sdk_trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("bench")
    for trace in range(count // SPANS_PER_TRACE):
        with tracer.start_as_current_span("invoke_agent bench") as root:
            root.set_attribute("gen_ai.operation.name", "invoke_agent")
            root.set_attribute("gen_ai.input.messages",
                               f'[{{"role": "user", "content": "question {trace}"}}]')  # fmt: skip
            for turn in range(SPANS_PER_TRACE - 1):
                if turn % 2:
                    with tracer.start_as_current_span("execute_tool search") as span:
                        span.set_attribute("gen_ai.operation.name", "execute_tool")
                        span.set_attribute("gen_ai.tool.name", "search")
                        span.set_attribute("gen_ai.tool.call.arguments",
                                           f'{{"query": "q{trace}-{turn}"}}')  # fmt: skip
                else:
                    with tracer.start_as_current_span("chat gpt-4o") as span:
                        span.set_attribute("gen_ai.operation.name", "chat")
                        span.set_attribute("gen_ai.request.model", "gpt-4o")
                        span.set_attribute("gen_ai.usage.input_tokens", 500 + turn)
                        span.set_attribute("gen_ai.usage.output_tokens", 40 + turn)
    provider.shutdown()
    return list(memory.get_finished_spans())


def steps_in(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        try:
            return int(conn.execute("SELECT count(*) FROM steps").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from tracedesk.core.analysis.pricing import Pricing
    from tracedesk.core.ingest import import_file
    from tracedesk.core.store import Store

    spans = make_spans(args.spans)
    batches = [spans[i : i + BATCH] for i in range(0, len(spans), BATCH)]
    # Encoded once here, so that the latency is the receiver's: export() encodes, then posts.
    bodies = [encode_spans(b).SerializePartialToString() for b in batches]
    print(f"{len(spans):,} spans in {len(batches)} requests of up to {BATCH}, {args.threads}"
          f" sending threads, {sum(map(len, bodies)) / len(spans):.0f} B/span")  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        db = Path(scratch) / "live.db"
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        child = context.Process(target=serve_child, args=(str(db), theirs))
        child.start()
        address = ours.recv()
        latencies: list[float] = []
        failures = 0
        lock = threading.Lock()

        def send(part: list[int]) -> None:
            nonlocal failures
            exporter = OTLPSpanExporter(endpoint=f"http://{address}/v1/traces", timeout=30)
            client = exporter._client  # the SDK's own HTTP client, with its retries
            for index in part:
                started = time.perf_counter()
                ok = client.export(bodies[index]).success
                took = time.perf_counter() - started
                with lock:
                    latencies.append(took)
                    failures += not ok
            exporter.shutdown()

        # Warm-up: one request, written (the connection, the first imports and the price
        # catalogue in the server: a server that has been listening for a second).
        warm = OTLPSpanExporter(endpoint=f"http://{address}/v1/traces")
        warm.export(batches[0])
        warm.shutdown()
        while steps_in(db) < len(batches[0]):
            time.sleep(0.02)
        ours.send("start")
        started = time.perf_counter()
        threads = [threading.Thread(target=send, args=(list(range(1, len(batches)))[t :: args.threads],))
                   for t in range(args.threads)]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        acked = time.perf_counter() - started
        while steps_in(db) < len(spans):
            time.sleep(0.02)
        written = time.perf_counter() - started
        ours.send("stop")
        summary = ours.recv()
        child.join()
        sent = len(spans) - len(batches[0])
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
        print(f"receiver: {sent / acked:,.0f} spans/s acknowledged ({acked:.2f} s),"
              f" {sent / written:,.0f} spans/s sustained into the database ({written:.2f} s);"
              f" request p50 {p50:.1f} ms, p99 {p99:.1f} ms per {BATCH}-span batch;"
              f" {failures} failed exports, {summary['errors']} refused;"
              f" stop (analyse every run) {summary['stop_s']:.2f} s")  # fmt: skip
        print(f"CPU of the receiving process from the clock's start to the end of the stop:"
              f" {summary['cpu_s'] / sent * 1e6:.1f} µs per span; its peak RSS"
              f" {summary['peak_mb']:.0f} MB")  # fmt: skip
        path = Path(scratch) / "same.pb"
        request = encode_spans(spans)
        path.write_bytes(request.SerializeToString())
        Pricing.load().warm()  # as warm as the server: the catalogue is loaded once a process
        with Store(Path(scratch) / "file.db") as store:
            started = time.perf_counter()
            import_file(store, path)
            took = time.perf_counter() - started
        print(f"file import of the same spans (one .pb file): {len(spans) / took:,.0f} spans/s"
              f" ({took:.2f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
