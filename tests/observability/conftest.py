"""Tracing on, against a loopback OTLP receiver; spans read from an in-memory exporter too."""

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from app.config import Settings
from tests.conftest import _ClientContext
from tests.observability.receivers import OtlpReceiver, SentryIngest


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver  # type: ignore[misc]


@pytest.fixture
def sentry() -> Iterator[SentryIngest]:
    with SentryIngest() as ingest:
        yield ingest  # type: ignore[misc]


@dataclass
class Traced:
    app: FastAPI
    client: httpx.AsyncClient
    memory: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.memory.get_finished_spans())

    def server_spans(self) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.kind.name == "SERVER"]


@pytest.fixture
def make_traced(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    otlp: OtlpReceiver,
) -> Callable[..., "_TracedContext"]:
    """An app with tracing on (exporting to `otlp`), whose spans an in-memory exporter keeps."""

    def make(**overrides: str) -> _TracedContext:
        settings = make_settings(OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint, **overrides)
        return _TracedContext(make_client(settings))

    return make


class _TracedContext:
    def __init__(self, context: _ClientContext) -> None:
        self.context = context

    async def __aenter__(self) -> Traced:
        memory = InMemorySpanExporter()
        self.context.app.state.tracing.provider.add_span_processor(SimpleSpanProcessor(memory))
        client = await self.context.__aenter__()
        return Traced(self.context.app, client, memory)

    async def __aexit__(self, *exc: object) -> None:
        await self.context.__aexit__(*exc)


@pytest.fixture
async def traced(make_traced: Callable[..., _TracedContext]) -> AsyncIterator[Traced]:
    async with make_traced() as running:
        yield running
