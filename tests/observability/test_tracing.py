"""Tracing on (CONTRACT.md section 12), read from an in-memory exporter: one server span per
request named by its route, its SQL and Redis calls as children, an incoming `traceparent`
continued, nothing for the probes, and the ids on the log lines. And off: nothing at all."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.models import OutboxJob
from tests.api.conftest import make_account
from tests.conftest import _ClientContext
from tests.core.test_logging import json_lines
from tests.observability.conftest import Traced

ITEMS = "/api/v1/items"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def hex_ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.get_span_context().span_id
    return [span for span in spans if span.parent and span.parent.span_id == parent_id]


async def test_a_request_is_one_server_span_named_by_its_route_with_sql_children(
    traced: Traced, database_url: str
) -> None:
    alice = await make_account(traced.client, "alice@example.com")
    created = await traced.client.post(ITEMS, json={"title": "one"}, headers=alice.headers)
    item_id = created.json()["id"]
    traced.memory.clear()

    fetched = await traced.client.get(f"{ITEMS}/{item_id}", headers=alice.headers)
    listed = await traced.client.get(ITEMS, headers=alice.headers)
    missing = await traced.client.get(f"{ITEMS}/{'0' * 8}-0000-0000-0000-{'0' * 12}")
    assert (fetched.status_code, listed.status_code, missing.status_code) == (200, 200, 401)

    spans = traced.spans()
    servers = traced.server_spans()
    assert [span.name for span in servers] == [
        "GET /api/v1/items/{item_id}",
        "GET /api/v1/items",
        "GET /api/v1/items/{item_id}",
    ]
    attributes: list[dict[str, Any]] = [dict(span.attributes or {}) for span in servers]
    assert [a["http.route"] for a in attributes] == [
        "/api/v1/items/{item_id}",
        "/api/v1/items",
        "/api/v1/items/{item_id}",
    ]
    assert [a["http.response.status_code"] for a in attributes] == [200, 200, 401]
    # Each request is its own trace; its database work is in it, as children of its span.
    assert len({span.get_span_context().trace_id for span in servers}) == 3
    for server in servers[:2]:
        database_spans = [
            span
            for span in children(spans, server)
            if span.kind.name == "CLIENT" and "db.statement" in (span.attributes or {})
        ]
        assert database_spans, f"no SQL span under {server.name}"
        assert all(span.name.startswith("SELECT") for span in database_spans)
    # PostgreSQL reads the list through asyncpg itself (DriverQuery): those are spans too.
    driver = [span for span in spans if span.instrumentation_scope.name.endswith("driver")]
    if database_url.startswith("postgresql"):
        under_list = children(spans, servers[1])
        assert {span.name for span in driver} <= {span.name for span in under_list}
        assert len([span for span in under_list if span in driver]) == 2  # session, page
    else:
        assert driver == []  # SQLite goes through SQLAlchemy, traced by its instrumentation


async def test_an_incoming_traceparent_is_continued(traced: Traced) -> None:
    header = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    await traced.client.get(ITEMS, headers=header)
    [server] = traced.server_spans()
    assert hex_ids(server)[0] == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert server.parent.is_remote


async def test_probes_and_the_scrape_make_no_spans(traced: Traced) -> None:
    await asyncio.sleep(0.2)  # the start-up superuser's statements, if any, are done
    traced.memory.clear()
    for path in ("/health", "/health/live", "/health/ready", "/metrics"):
        answer = await traced.client.get(path)
        assert answer.status_code == 200, path
    assert traced.spans() == []


async def test_every_log_line_of_a_traced_request_carries_its_ids(
    traced: Traced, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    answer = await traced.client.get(ITEMS, headers={"X-Request-ID": "traced-1"})
    assert answer.status_code == 401
    [server] = traced.server_spans()
    trace_id, span_id = hex_ids(server)
    lines = [line for line in json_lines(capfd.readouterr().err) if line.get("request_id")]
    assert lines, "no log line for the request"
    assert {(line["trace_id"], line["span_id"]) for line in lines} == {(trace_id, span_id)}
    [access] = [line for line in lines if line["event"] == "request"]
    assert access["path"] == ITEMS  # the path, not null, and never its query string


async def test_redis_commands_are_children_of_the_request(
    make_traced: Callable[..., Any], redis_url: str
) -> None:
    async with make_traced(REDIS_URL=redis_url) as running:
        await running.client.get(ITEMS)
        [server] = running.server_spans()
        redis_spans = [
            span
            for span in children(running.spans(), server)
            if (span.attributes or {}).get("db.system") == "redis"
        ]
        assert redis_spans, "the rate limiter's Redis call made no span"


async def test_a_job_is_recorded_with_the_request_trace_context(
    traced: Traced, cleanup_engine: AsyncEngine
) -> None:
    await make_account(traced.client, "carol@example.com")
    async with cleanup_engine.connect() as connection:
        job = (await connection.execute(select(OutboxJob))).one()
    register = next(span for span in traced.server_spans() if "register" in span.name)
    trace_id, span_id = hex_ids(register)
    assert job.trace_context is not None
    assert job.trace_context["traceparent"].startswith(f"00-{trace_id}-{span_id}-")


async def test_tracing_off_installs_nothing_and_makes_no_span(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    cleanup_engine: AsyncEngine,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Off means off: no provider (Keel's or the global one), no instrumentation, no span
    around a request, no trace context stored with a job, no ids on the log lines."""
    global_provider = trace.get_tracer_provider()
    context = make_client(make_settings())
    app: FastAPI = context.app
    seen: list[bool] = []

    @app.get("/_test/span")
    async def current_span() -> None:
        seen.append(trace.get_current_span().get_span_context().is_valid)

    async with context as client:
        assert app.state.tracing is None
        assert not SQLAlchemyInstrumentor().is_instrumented_by_opentelemetry
        assert not RedisInstrumentor().is_instrumented_by_opentelemetry
        await client.get("/_test/span", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
        await make_account(client, "dave@example.com")
    assert seen == [False]
    assert trace.get_tracer_provider() is global_provider
    assert type(global_provider).__name__ == "ProxyTracerProvider"  # nobody set one
    async with cleanup_engine.connect() as connection:
        job = (await connection.execute(select(OutboxJob))).one()
    assert job.trace_context is None
    assert not any("trace_id" in line for line in json_lines(capfd.readouterr().err))
