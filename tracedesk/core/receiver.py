"""Live capture, the network side: a local OTLP/HTTP receiver.

It answers ``POST /v1/traces`` (OpenTelemetry exporters) and ``/api/public/otel/v1/traces``
(the Langfuse SDK, pointed at tracedesk by its host alone), with protobuf or JSON bodies,
gzip- or deflate-compressed or not, as the OTLP/HTTP specification says:

- 200 with an ``ExportTraceServiceResponse``, its ``partial_success`` counting the spans that
  could not be mapped (in the request's encoding: protobuf or JSON);
- 400 for a body that is not a request, 411 without a length, 413 for a body over
  ``MAX_BODY_BYTES`` (or inflating beyond ``MAX_INFLATED_BYTES``), 415 for another content
  type or encoding, 404 for another path, 405 for another method;
- 503 with ``Retry-After`` while the queue is full, so exporters back off and send again.

Each request is decoded and mapped (by the OTLP importer, so spans map exactly as in a file)
on its connection's thread and put on a bounded ``SpanQueue``; the 200 is sent once the
spans are queued. One writer takes them off (``tracedesk.core.live``), so nothing here
touches the database. The standard library's ``ThreadingHTTPServer`` with keep-alive: the
work per request is the mapping, which holds the GIL whatever serves the socket.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import socket
import threading
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from tracedesk.core.importers import otlp, otlp_protobuf
from tracedesk.core.importers.base import ReadContext
from tracedesk.core.model import ImportResult, Run, Step

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4318
TRACE_PATHS = ("/v1/traces", "/api/public/otel/v1/traces")
MAX_BODY_BYTES = 32 << 20  # a request as sent; an SDK batch of 512 spans is well under 1 MB
MAX_INFLATED_BYTES = 128 << 20  # a compressed request once inflated
QUEUE_SPANS = 200_000  # acknowledged spans waiting for the writer; beyond this, 503
RETRY_AFTER_S = 1
PROTOBUF = "application/x-protobuf"
CONTENT_TYPES = {PROTOBUF: "protobuf", "application/protobuf": "protobuf",
                 "application/json": "json"}  # fmt: skip


class RequestError(Exception):
    """A request answered with an error status (and a google.rpc.Status body)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Decoded:
    """What one export request held: its runs and steps, and the spans that were rejected."""

    records: list[Run | Step]
    spans: int
    rejected: int = 0
    problem: str = ""


def inflate(body: bytes, encoding: str) -> bytes:
    """The body without its Content-Encoding, refusing one that inflates too far (413)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise RequestError(415, f"unsupported Content-Encoding {encoding!r} (use gzip)")
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, MAX_INFLATED_BYTES + 1)
    except zlib.error as exc:
        raise RequestError(400, f"the body is not valid {encoding} ({exc})") from None
    if len(data) > MAX_INFLATED_BYTES or inflater.unconsumed_tail:
        raise RequestError(413, f"the body inflates beyond {MAX_INFLATED_BYTES >> 20} MB")
    if not inflater.eof:
        raise RequestError(400, f"the body is truncated {encoding}")
    return data


def decode(body: bytes, encoding: str) -> Decoded:
    """Map an export request (``encoding`` "protobuf" or "json") into runs and steps; a span
    that cannot be mapped is counted as rejected, the rest are kept."""
    ctx = ReadContext(path="request", result=ImportResult(path="request", format="otlp"),
                      skip_bad=True)  # fmt: skip
    if encoding == "protobuf":
        try:
            request = otlp_protobuf.decode_request(body)
        except ValueError as exc:
            raise RequestError(400, str(exc)) from None
        records = list(otlp_protobuf.request_records(request, ctx))
    else:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise RequestError(400, f"malformed JSON ({exc})") from None
        if not isinstance(document, dict) or not isinstance(
            document.get("resourceSpans", []), list
        ):
            raise RequestError(400, "not an OTLP ExportTraceServiceRequest (no resourceSpans)")
        try:
            records = list(otlp._request(document, "request", ctx))
        except (TypeError, AttributeError, ValueError) as exc:  # a malformed structure
            raise RequestError(400, f"not an OTLP ExportTraceServiceRequest ({exc})") from None
    spans = sum(type(r) is Step for r in records)
    result = ctx.result
    return Decoded(
        records, spans, result.bad_records, result.warnings[0] if result.warnings else ""
    )


def export_response(decoded: Decoded, encoding: str) -> bytes:
    """The ExportTraceServiceResponse, with partial_success when spans were rejected."""
    if encoding == "json":
        if not decoded.rejected:
            return b"{}"
        return orjson.dumps({"partialSuccess": {"rejectedSpans": str(decoded.rejected),
                                                "errorMessage": decoded.problem}})  # fmt: skip
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTracePartialSuccess,
        ExportTraceServiceResponse,
    )

    response = ExportTraceServiceResponse()
    if decoded.rejected:
        partial = ExportTracePartialSuccess(
            rejected_spans=decoded.rejected, error_message=decoded.problem
        )
        response.partial_success.CopyFrom(partial)
    return bytes(response.SerializeToString())


def status_body(code: int, message: str, encoding: str) -> bytes:
    """A google.rpc.Status (code, message), as the specification asks of error responses."""
    if encoding != "protobuf":
        return orjson.dumps({"code": code, "message": message})
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def _varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte, number = number & 0x7F, number >> 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


# google.rpc.Code for each HTTP status answered.
RPC_CODES = {400: 3, 404: 5, 405: 12, 411: 3, 413: 8, 415: 3, 503: 14}


class SpanQueue:
    """Acknowledged records waiting for the writer, bounded by a number of spans."""

    def __init__(self, capacity: int = QUEUE_SPANS):
        self.capacity = capacity
        self._batches: deque[tuple[list[Run | Step], int]] = deque()
        self._ready = threading.Condition()
        self.pending = 0  # spans queued

    def full(self) -> bool:
        return self.pending >= self.capacity

    def put(self, records: list[Run | Step], spans: int) -> bool:
        """Queue a request's records; False (and nothing queued) when they do not fit."""
        with self._ready:
            if self.pending and self.pending + spans > self.capacity:
                return False
            self._batches.append((records, spans))
            self.pending += spans
            self._ready.notify()
            return True

    def take(self, max_spans: int = 20_000, timeout: float | None = None) -> list[Run | Step]:
        """The oldest queued records, whole requests up to about ``max_spans`` spans; waits
        up to ``timeout`` seconds for some (None: does not wait)."""
        with self._ready:
            if not self._batches and timeout:
                self._ready.wait(timeout)
            records: list[Run | Step] = []
            taken = 0
            while self._batches and (not records or taken < max_spans):
                batch, spans = self._batches.popleft()
                records.extend(batch)
                taken += spans
            self.pending -= taken
            return records


@dataclass
class ReceiverStats:
    """Counts since the receiver started (read from any thread)."""

    requests: int = 0
    spans: int = 0  # accepted and queued
    rejected_spans: int = 0
    errors: int = 0  # requests answered with an error status
    last_error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, spans: int = 0, rejected: int = 0, error: str = "") -> None:
        with self.lock:
            self.requests += 1
            self.spans += spans
            self.rejected_spans += rejected
            if error:
                self.errors += 1
                self.last_error = error


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: an exporter sends batch after batch
    server: _Server
    server_version = "tracedesk"

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # counted in the stats instead; a terminal full of access lines helps nobody

    def do_POST(self) -> None:
        encoding = "json"
        try:
            if self.path.split("?", 1)[0] not in TRACE_PATHS:
                raise RequestError(404, f"no such path {self.path!r}; traces go to /v1/traces")
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            encoding = CONTENT_TYPES.get(content_type, "json")
            body = self._body()
            if content_type not in CONTENT_TYPES:
                raise RequestError(415, f"unsupported Content-Type {content_type!r}; send"
                                   " application/x-protobuf or application/json")  # fmt: skip
            if self.server.queue.full():
                raise RequestError(503, "the receiver's queue is full; retry later")
            body = inflate(body, self.headers.get("Content-Encoding") or "")
            decoded = decode(body, encoding)
            if not self.server.queue.put(decoded.records, decoded.spans):
                raise RequestError(503, "the receiver's queue is full; retry later")
        except RequestError as exc:
            self._error(exc, encoding)
            return
        self.server.stats.count(decoded.spans, decoded.rejected)
        if self.server.on_queued is not None:
            self.server.on_queued()
        self._send(200, export_response(decoded, encoding),
                   PROTOBUF if encoding == "protobuf" else "application/json")  # fmt: skip

    def _body(self) -> bytes:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length is required")
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"bad Content-Length {length_text!r}") from None
        limit = self.server.max_body
        if length > limit or length < 0:
            if 0 < length <= 4 * limit:  # read and dropped, so that the client reads the 413
                left = length
                while left > 0 and (chunk := self.rfile.read(min(left, 1 << 20))):
                    left -= len(chunk)
            else:
                self.close_connection = True  # not read: the connection cannot go on
            raise RequestError(413, f"the body ({length_text} bytes) is over the limit of"
                               f" {limit:,} bytes")  # fmt: skip
        body = self.rfile.read(length)
        if len(body) < length:  # the client went away, or the receiver is stopping
            self.close_connection = True
            raise RequestError(400, "the body ended early")
        return body

    def _error(self, exc: RequestError, encoding: str) -> None:
        self.server.stats.count(error=f"{exc.status}: {exc.message}")
        headers = {"Retry-After": str(RETRY_AFTER_S)} if exc.status == 503 else {}
        self._send(exc.status, status_body(RPC_CODES.get(exc.status, 2), exc.message, encoding),
                   PROTOBUF if encoding == "protobuf" else "application/json", headers)  # fmt: skip

    def _send(self, status: int, body: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client went away
            self.close_connection = True

    def _not_allowed(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._error(RequestError(405, f"{self.command} is not allowed; POST traces"), "json")

    do_GET = do_PUT = do_DELETE = do_PATCH = _not_allowed


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close waits for the requests in progress

    def __init__(self, address: tuple[str, int], queue: SpanQueue, stats: ReceiverStats,
                 on_queued: Callable[[], None] | None, max_body: int):  # fmt: skip
        self.queue, self.stats, self.on_queued = queue, stats, on_queued
        self.max_body = max_body
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class PortTaken(OSError):
    """The port is in use (by another collector, or another tracedesk)."""

    def __str__(self) -> str:
        return str(self.strerror)


class Receiver:
    """The OTLP/HTTP server, serving on a thread of its own until ``stop``."""

    def __init__(self, queue: SpanQueue, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 on_queued: Callable[[], None] | None = None,
                 max_body: int = MAX_BODY_BYTES):  # fmt: skip
        """Binds at once; raises PortTaken when the port is in use, OSError otherwise."""
        self.queue = queue
        self.stats = ReceiverStats()
        try:
            self._server = _Server((host, port), queue, self.stats, on_queued, max_body)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(exc.errno, f"port {port} on {host} is already in use") from None
            raise
        self.host = host
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}{TRACE_PATHS[0]}"

    def start(self) -> Receiver:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"otlp-receiver-{self.port}", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, end idle keep-alive connections, and wait for the requests in
        progress: when this returns, every acknowledged span is in the queue."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        with self._server.lock:
            connections = list(self._server.connections)
        for connection in connections:  # a handler waiting for the next request ends now
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RD)
        self._server.server_close()


def free_port(host: str = DEFAULT_HOST, near: int | None = None) -> int:
    """A port free on ``host`` now: the next few after ``near`` first (easy to remember
    beside it), else any the system gives."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for port in [*(range(near + 1, near + 20) if near else ()), 0]:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError(f"no free port on {host}")
