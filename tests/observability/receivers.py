"""Loopback stand-ins for what Keel reports to: an OTLP/HTTP trace receiver that parses each
`ExportTraceServiceRequest` (the protobuf a collector gets) and a Sentry ingest that keeps each
envelope. Both run in a thread, on a free port, for one test."""

import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    status: int  # 0 unset, 1 ok, 2 error
    attributes: dict[str, Any] = field(hash=False)


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 whose POSTs go to `handle(path, body)`."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                status, reply = owner.handle(self.path, body, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        raise NotImplementedError

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class OtlpReceiver(_Server):
    """Accepts `POST /v1/traces` as a collector does; `spans` is everything received."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ExportedSpan] = []
        self.paths: list[str] = []

    @property
    def endpoint(self) -> str:
        """What OTEL_EXPORTER_OTLP_ENDPOINT is set to."""
        return f"http://127.0.0.1:{self.port}"

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        request = ExportTraceServiceRequest.FromString(body)
        received = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        ExportedSpan(
                            service=str(resource.get("service.name")),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            status=span.status.code,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        with self.lock:
            self.paths.append(path)
            self.spans.extend(received)
        return 200, ExportTraceServiceResponse().SerializeToString()

    def wait_for(
        self, condition: Callable[[list[ExportedSpan]], bool], seconds: float = 20
    ) -> list[ExportedSpan]:
        """The spans received, once `condition` holds for them."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.lock:
                spans = list(self.spans)
            if condition(spans):
                return spans
            time.sleep(0.05)
        raise AssertionError(f"never received the expected spans; got {self.spans}")


class SentryIngest(_Server):
    """Accepts a Sentry SDK's envelopes; `events` holds each error event's JSON."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[dict[str, Any]] = []
        self.raw: list[bytes] = []

    @property
    def dsn(self) -> str:
        return f"http://public-key@127.0.0.1:{self.port}/1"

    def handle(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        # An envelope: a header line, then (item header line, payload line) pairs.
        lines = body.split(b"\n")
        with self.lock:
            self.raw.append(body)
            for header, payload in zip(lines[1::2], lines[2::2], strict=False):
                if json.loads(header).get("type") == "event":
                    self.events.append(json.loads(payload))
        return 200, b"{}"
