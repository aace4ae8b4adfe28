"""Prometheus metrics in one process: scraped through GET /metrics after real traffic."""

import asyncio
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import Message, Receive, Scope, Send

from app.config import Settings
from app.core import metrics
from app.core.metrics import record_rate_limited
from app.core.middleware import EdgeMiddleware


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(
    scrape: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return samples(response.text)


async def test_requests_counted_by_route_template_and_status(client: httpx.AsyncClient) -> None:
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get("/health/live")).status_code == 200
    assert (await client.get("/no/such/page-42")).status_code == 404
    after = await scrape(client)

    live = {"method": "GET", "route": "/health/live", "status": "200"}
    unmatched = {"method": "GET", "route": "<unmatched>", "status": "404"}
    assert (
        value(after, "http_requests_total", **live) - value(before, "http_requests_total", **live)
        == 3
    )
    assert (
        value(after, "http_requests_total", **unmatched)
        - value(before, "http_requests_total", **unmatched)
        == 1
    )
    count = "http_request_duration_seconds_count"
    assert value(after, count, **live) - value(before, count, **live) == 3
    # The raw path of an unknown route never becomes a label value.
    assert "page-42" not in (await client.get("/metrics")).text
    # Only the scrape itself is in flight while it renders.
    assert value(after, "http_requests_in_progress", method="GET") == 1


async def test_pool_usage_is_exposed(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/ready")).status_code == 200
    scrape_ = await scrape(client)
    assert value(scrape_, "db_pool_size") >= 1
    # The readiness check returned its connection: none is checked out between requests.
    assert value(scrape_, "db_pool_connections_in_use") == 0


async def test_rate_limit_rejections_are_counted(client: httpx.AsyncClient) -> None:
    before = value(await scrape(client), "rate_limited_requests_total", scope="auth")
    record_rate_limited("auth")
    record_rate_limited("auth")
    after = value(await scrape(client), "rate_limited_requests_total", scope="auth")
    assert after - before == 2


async def test_metrics_route_is_outside_the_api_and_its_schema(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    openapi = (await client.get(f"{app.state.settings.API_V1_PREFIX}/openapi.json")).json()
    assert "/metrics" not in openapi["paths"]
    assert (await client.get(f"{app.state.settings.API_V1_PREFIX}/metrics")).status_code == 404


def _instrumented_app(settings: Settings) -> FastAPI:
    """A bare app behind the edge middleware alone, which records the request metrics."""
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: int) -> dict[str, int]:
        if thing_id == 0:
            raise HTTPException(status_code=404)
        return {"id": thing_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.post("/upload")
    async def upload() -> None:
        raise AssertionError("a refused body never reaches the endpoint")

    app.add_middleware(EdgeMiddleware, settings=settings)
    return app


async def test_middleware_labels_templates_errors_and_odd_methods(
    make_settings: Callable[..., Settings],
) -> None:
    app = _instrumented_app(make_settings(MAX_REQUEST_BODY_BYTES=10))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        before = samples(metrics.render()[0].decode())
        assert (await client.get("/things/1")).status_code == 200
        assert (await client.get("/things/2")).status_code == 200
        assert (await client.get("/things/0")).status_code == 404
        assert (await client.get("/boom")).status_code == 500
        assert (await client.request("BREW", "/things/1")).status_code == 405
        # Answered by the edge itself, before any route is matched: counted all the same.
        assert (await client.post("/upload", content=b"x" * 11)).status_code == 413
        after = samples(metrics.render()[0].decode())

    def delta(**labels: str) -> float:
        return value(after, "http_requests_total", **labels) - value(
            before, "http_requests_total", **labels
        )

    assert delta(method="GET", route="/things/{thing_id}", status="200") == 2
    assert delta(method="GET", route="/things/{thing_id}", status="404") == 1
    assert delta(method="GET", route="/boom", status="500") == 1
    assert delta(method="OTHER", route="/things/{thing_id}", status="405") == 1
    assert delta(method="POST", route="<unmatched>", status="413") == 1
    assert value(after, "http_requests_in_progress", method="GET") == 0


async def test_a_request_cancelled_before_its_answer_counts_as_499(
    make_settings: Callable[..., Settings],
) -> None:
    started = asyncio.Event()

    async def endless(scope: Scope, receive: Receive, send: Send) -> None:
        started.set()
        await asyncio.sleep(3600)

    edge = EdgeMiddleware(endless, settings=make_settings())
    scope: Scope = {
        "type": "http",
        "method": "GET",
        "path": "/slow",
        "headers": [],
        "client": ("127.0.0.1", 1),
    }

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        raise AssertionError("nothing is sent for a request the server cancelled")

    labels = {"method": "GET", "route": "<unmatched>", "status": "499"}
    before = value(samples(metrics.render()[0].decode()), "http_requests_total", **labels)
    task = asyncio.create_task(edge(scope, receive, send))  # the server's task, as Uvicorn does
    await started.wait()
    task.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await task
    after = samples(metrics.render()[0].decode())
    assert value(after, "http_requests_total", **labels) - before == 1
    assert value(after, "http_requests_in_progress", method="GET") == 0


async def test_included_routes_are_labelled_with_their_full_template(
    client: httpx.AsyncClient,
) -> None:
    # The items router is declared without its /api/v1/items prefix; the label must carry it.
    labels = {"method": "GET", "route": "/api/v1/items/{item_id}", "status": "401"}
    before = value(await scrape(client), "http_requests_total", **labels)
    for item_id in ("3f0c6b1e-7f41-4a55-9b53-0d2a3c9e8a11", "5b7e8f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"):
        assert (await client.get(f"/api/v1/items/{item_id}")).status_code == 401
    after = await scrape(client)
    assert value(after, "http_requests_total", **labels) - before == 2
    assert item_id not in (await client.get("/metrics")).text


def test_latencies_land_in_their_buckets_with_exact_count_and_sum() -> None:
    """What the request middleware records, as a scrape shows it (cumulative buckets, `le`
    inclusive, sum and count)."""
    route = "/_test/buckets"
    metrics.record_request("PATCH", route, 200, 0.005)  # on a bound: that bucket (le="0.005")
    for seconds in (0.0051, 0.7, 100.0):  # le="0.01", le="1.0", only +Inf
        metrics.record_request("PATCH", route, 200, seconds)

    scraped = samples(metrics.render()[0].decode())
    labels = {"method": "PATCH", "route": route, "status": "200"}
    name = "http_request_duration_seconds"
    buckets = {
        bound: value(scraped, f"{name}_bucket", le=bound, **labels)
        for bound in ("0.005", "0.01", "0.5", "1.0", "30.0", "+Inf")
    }
    assert buckets == {
        "0.005": 1,
        "0.01": 2,
        "0.5": 2,
        "1.0": 3,
        "30.0": 3,
        "+Inf": 4,
    }
    assert value(scraped, f"{name}_count", **labels) == 4
    assert value(scraped, f"{name}_sum", **labels) == pytest.approx(0.005 + 0.0051 + 0.7 + 100)
    assert value(scraped, "http_requests_total", **labels) == 4
    assert value(scraped, "http_requests_in_progress", method="PATCH") == 0
