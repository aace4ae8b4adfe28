"""OpenTelemetry traces (CONTRACT.md section 12): built only with OTEL_EXPORTER_OTLP_ENDPOINT set.

Off means off: without it `build_tracing` returns None, FastAPI's own telemetry stays switched
off, nothing is instrumented and no provider exists. On, a process has one `Tracing`: its own
TracerProvider (never the global one, so that each app and worker holds its own), exporting over
OTLP/HTTP (protobuf) from the lifespan on, after the fork. FastAPI makes the server spans; the
engine's SQL, Keel's Redis commands, `DriverQuery`'s reads, the jobs and the SMTP sends are
child spans. The standard variables (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER[_ARG],
OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS...) are read by the SDK itself.
"""

import os
from collections.abc import Mapping, MutableMapping
from typing import Any, Final
from weakref import WeakKeyDictionary

from fastapi.telemetry import TelemetryConfig
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import Pool
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.core.build import version

API_SERVICE: Final = "keel"
WORKER_SERVICE: Final = "keel-worker"
# FastAPI's telemetry while tracing is off: no provider lookup on any request.
TELEMETRY_OFF: Final[TelemetryConfig] = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def is_untraced(path: str) -> bool:
    """The probes and the scrape: frequent, uninteresting, never traced."""
    return path in {"/metrics", "/health"} or path.startswith("/health/")


def _untraced_scope(scope: MutableMapping[str, Any]) -> bool:
    return is_untraced(scope.get("path", ""))


def current_carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers (`traceparent`...), to store with a job."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


def _resource(service_name: str) -> Resource:
    resource = Resource.create({SERVICE_VERSION: version()})
    # OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES win; the SDK's own fallback is meaningless.
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service_name}))
    return resource


class Tracing:
    """One process's tracing: its provider, the instrumentation it installed, and their end."""

    def __init__(self, settings: Settings, service_name: str) -> None:
        assert settings.OTEL_EXPORTER_OTLP_ENDPOINT is not None
        self.traces_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
            f"{settings.OTEL_EXPORTER_OTLP_ENDPOINT}/v1/traces"
        )
        # No thread and no connection until `start`: safe to build before a fork. The sampler
        # comes from OTEL_TRACES_SAMPLER (default: parent-based, always on).
        self.provider = TracerProvider(resource=_resource(service_name))
        self._engines: list[AsyncEngine] = []
        self._redis = False

    def start(self, engine: AsyncEngine, *, redis: bool) -> None:
        """Begin exporting (a background thread), in the lifespan or the worker: after the fork
        and after the engines are built (the instrumentor also wraps engine creation)."""
        exporter = OTLPSpanExporter(endpoint=self.traces_endpoint)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.instrument_engine(engine)
        if redis:
            self.instrument_redis()

    def tracer(self, name: str) -> trace.Tracer:
        return self.provider.get_tracer(name, version())

    def fastapi_telemetry(self) -> TelemetryConfig:
        """FastAPI's server spans on this provider; its HTTP metrics off (Prometheus is the
        metrics path), its log records off (structlog is), its per-operation spans off (they
        double its cost), the probes and /metrics excluded."""
        return {
            "tracer_provider": self.provider,
            "tracing": True,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
            "exclude": _untraced_scope,
        }

    def instrument_engine(self, engine: AsyncEngine) -> None:
        """SQL statements as child spans, and `DriverQuery`'s reads on this engine's pool."""
        # The per-engine form (the global one attaches two tracers to an async engine). It
        # declares SQLAlchemy < 2.1 while its events are unchanged in 2.1: checked by the tests.
        SQLAlchemyInstrumentor().instrument(
            engine=engine.sync_engine,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),
            skip_dep_check=True,
        )
        _DRIVER_TRACERS[engine.sync_engine.pool] = self.tracer("app.repositories.driver")
        self._engines.append(engine)

    def instrument_redis(self) -> None:
        """Redis commands as child spans: the rate limiter's and the job hand-overs'.

        Process-wide, so only where every client is Keel's own request-path client (the API);
        the worker's would trace its queue's blocking reads every two seconds.
        """
        RedisInstrumentor().instrument(tracer_provider=self.provider)
        self._redis = True

    def shutdown(self) -> None:
        """Undo the instrumentation and export what is left."""
        if self._engines:
            SQLAlchemyInstrumentor().uninstrument()
            for engine in self._engines:
                _DRIVER_TRACERS.pop(engine.sync_engine.pool, None)
            self._engines.clear()
        if self._redis:
            RedisInstrumentor().uninstrument()
            self._redis = False
        self.provider.shutdown()


def build_tracing(settings: Settings, service_name: str) -> Tracing | None:
    """A process's tracing; None, and nothing built, when OTEL_EXPORTER_OTLP_ENDPOINT is unset."""
    return Tracing(settings, service_name) if settings.tracing_enabled else None


# The tracer of `DriverQuery`'s reads, by pool (an engine's execution_options() copies share it).
_DRIVER_TRACERS: WeakKeyDictionary[Pool, trace.Tracer] = WeakKeyDictionary()


def driver_tracer(connection: AsyncConnection) -> trace.Tracer | None:
    """The tracer for statements run on this connection's driver itself, or None (off)."""
    return _DRIVER_TRACERS.get(connection.sync_engine.pool) if _DRIVER_TRACERS else None


def extract(carrier: Mapping[str, str] | None) -> Any:
    """The trace context a job was recorded in (an empty context when it has none)."""
    return propagate.extract(carrier or {})


class UntracedPathsMiddleware:
    """The probes' and /metrics' database and Redis calls make no spans (root spans otherwise,
    since FastAPI makes no server span for them). Installed only while tracing is on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_untraced(scope["path"]):
            with suppress_instrumentation():
                await self.app(scope, receive, send)
            return
        await self.app(scope, receive, send)
