"""Admission control (CONTRACT.md 7, "Overload"): past MAX_CONCURRENT_REQUESTS a request waits
briefly for a slot or gets the 503 at once; the probes and /metrics are always admitted.

Requests are held inside a route until the test lets them go, so every assertion is a count,
never a latency."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from fastapi import FastAPI

from app.config import Settings
from tests.conftest import _ClientContext
from tests.core.test_logging import json_lines
from tests.core.test_metrics import scrape, value
from tests.core.test_middleware import assert_edge_headers

HELD = "/api/v1/_test/held"
REFUSED = "http_requests_refused_total"


@dataclass
class Gate:
    """A route whose requests stay inside until `open` is set; `inside` counts them."""

    inside: int = 0
    open: asyncio.Event = field(default_factory=asyncio.Event)

    def install(self, app: FastAPI) -> None:
        @app.get(HELD)
        async def held() -> dict[str, bool]:
            self.inside += 1
            await self.open.wait()
            return {"ok": True}

    async def until_inside(self, count: int) -> None:
        for _ in range(1000):
            if self.inside >= count:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"{self.inside} of {count} requests got inside")


@asynccontextmanager
async def gated_app(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    **overrides: object,
) -> AsyncIterator[tuple[httpx.AsyncClient, Gate]]:
    context = make_client(make_settings(**overrides))
    gate = Gate()
    gate.install(context.app)
    async with context as client:
        try:
            yield client, gate
        finally:
            gate.open.set()


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    body = response.json()
    assert body["error"] == "service_unavailable"
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["retry-after"] in {"1", "2"}
    assert_edge_headers(response)
    assert "x-ratelimit-remaining" not in response.headers  # refused before the rate limiter


async def test_past_the_limit_requests_are_refused_and_the_admitted_complete(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    capfd: pytest.CaptureFixture[str],
) -> None:
    async with gated_app(
        make_settings, make_client, MAX_CONCURRENT_REQUESTS=2, ADMISSION_QUEUE_TIMEOUT_MS=50
    ) as (client, gate):
        before = await scrape(client)
        capfd.readouterr()
        admitted = [asyncio.create_task(client.get(HELD)) for _ in range(2)]
        await gate.until_inside(2)
        # No request has finished yet, so nothing says the wait is hopeless: all seven wait for a
        # slot until their deadline.
        refused = await asyncio.gather(*(client.get(HELD) for _ in range(7)))
        probes = [await client.get(path) for path in ("/health/live", "/health/ready", "/health")]
        after = await scrape(client)
        assert not any(task.done() for task in admitted)  # held throughout
        gate.open.set()
        answers = await asyncio.gather(*admitted)
        later = await client.get(HELD)
    logged = json_lines(capfd.readouterr().err)

    for response in refused:
        assert_refused(response)
    assert [response.status_code for response in answers] == [200, 200]
    assert answers[0].headers["x-ratelimit-remaining"]  # admitted: the limiter ran
    assert [response.status_code for response in probes] == [200, 200, 200]
    assert later.status_code == 200  # the slots are handed back
    assert (
        value(after, REFUSED, reason="queue_timeout")
        - value(before, REFUSED, reason="queue_timeout")
        == 7
    )
    # In the request metrics like any other answer; no route was matched (that is the router's
    # work, which a refusal is spared), like a 429's.
    status_503 = {"method": "GET", "route": "<unmatched>", "status": "503"}
    assert (
        value(after, "http_requests_total", **status_503)
        - value(before, "http_requests_total", **status_503)
        == 7
    )
    # The log: the admitted requests' access lines, and for the refusals only the throttled line.
    access = [line for line in logged if line.get("event") == "request"]
    assert {line["status"] for line in access} == {200}
    warnings = [line for line in logged if line.get("event") == "requests_refused"]
    assert 1 <= len(warnings) < 7  # throttled: not one line per refusal
    assert warnings[0]["refused"] == 1
    assert warnings[0]["limit"] == 2
    assert sum(line["refused"] for line in warnings) <= 7


async def test_a_request_whose_turn_would_come_too_late_is_refused_at_once(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    """Requests have held their slots 150 ms or more: with 2 slots, the first waiter's turn would
    come after about 75 ms, past the 50 ms deadline, so waiting would be in vain."""
    async with gated_app(
        make_settings, make_client, MAX_CONCURRENT_REQUESTS=2, ADMISSION_QUEUE_TIMEOUT_MS=50
    ) as (client, gate):
        slow = [asyncio.create_task(client.get(HELD)) for _ in range(2)]
        await gate.until_inside(2)
        await asyncio.sleep(0.15)
        gate.open.set()
        assert [(await task).status_code for task in slow] == [200, 200]
        gate.open.clear()
        held = [asyncio.create_task(client.get(HELD)) for _ in range(2)]
        await gate.until_inside(4)
        before = await scrape(client)
        refused = await asyncio.gather(*(client.get(HELD) for _ in range(3)))
        after = await scrape(client)
        gate.open.set()
        assert [(await task).status_code for task in held] == [200, 200]
    for response in refused:
        assert_refused(response)
    full = value(after, REFUSED, reason="queue_full") - value(before, REFUSED, reason="queue_full")
    waited = value(after, REFUSED, reason="queue_timeout") - value(
        before, REFUSED, reason="queue_timeout"
    )
    assert (full, waited) == (3, 0)


async def test_a_waiting_request_gets_the_next_free_slot(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
) -> None:
    async with gated_app(
        make_settings, make_client, MAX_CONCURRENT_REQUESTS=1, ADMISSION_QUEUE_TIMEOUT_MS=30_000
    ) as (client, gate):
        first = asyncio.create_task(client.get(HELD))
        await gate.until_inside(1)
        # One slot: the next two wait for it, in turn, well within their deadline.
        waiting = [asyncio.create_task(client.get(HELD)) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert gate.inside == 1
        assert not any(task.done() for task in waiting)
        gate.open.set()
        answers = [await first, *[await task for task in waiting]]
    assert [response.status_code for response in answers] == [200, 200, 200]
    assert gate.inside == 3


async def test_the_probes_and_metrics_are_always_admitted(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
) -> None:
    async with gated_app(
        make_settings, make_client, MAX_CONCURRENT_REQUESTS=1, ADMISSION_QUEUE_TIMEOUT_MS=1
    ) as (client, gate):
        held = asyncio.create_task(client.get(HELD))
        await gate.until_inside(1)
        paths = ["/health/live", "/health/ready", "/health", "/metrics"] * 5
        answers = await asyncio.gather(*(client.get(path) for path in paths))
        refused = await client.get("/api/v1/items")
        gate.open.set()
        assert (await held).status_code == 200
    assert [response.status_code for response in answers] == [200] * len(paths)
    assert_refused(refused)


async def test_refused_clients_are_told_to_come_back_spread_over_two_seconds(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
) -> None:
    """Clients refused together must not all come back in the same second: `Retry-After` is
    1 or 2 at random (40 refusals all alike: one chance in 2**39)."""
    async with gated_app(
        make_settings, make_client, MAX_CONCURRENT_REQUESTS=1, ADMISSION_QUEUE_TIMEOUT_MS=1
    ) as (client, gate):
        held = asyncio.create_task(client.get(HELD))
        await gate.until_inside(1)
        refused = await asyncio.gather(*(client.get(HELD) for _ in range(40)))
        gate.open.set()
        assert (await held).status_code == 200
    for response in refused:
        assert_refused(response)
    assert {response.headers["retry-after"] for response in refused} == {"1", "2"}


@pytest.mark.parametrize(
    ("name", "value_"),
    [
        ("MAX_CONCURRENT_REQUESTS", "0"),
        ("MAX_CONCURRENT_REQUESTS", "abc"),
        ("ADMISSION_QUEUE_TIMEOUT_MS", "0"),
        ("ADMISSION_QUEUE_TIMEOUT_MS", "600000"),
    ],
)
def test_admission_settings_are_validated(
    make_settings: Callable[..., Settings], name: str, value_: str
) -> None:
    with pytest.raises(SystemExit, match=name):
        make_settings(**{name: value_})


def test_the_default_limit_follows_the_pool(make_settings: Callable[..., Settings]) -> None:
    from app.core.admission import admission_limit

    assert admission_limit(make_settings(DATABASE_POOL_SIZE=10)) == 20
    assert admission_limit(make_settings(DATABASE_POOL_SIZE=5, DATABASE_MAX_OVERFLOW=3)) == 16
    assert admission_limit(make_settings(MAX_CONCURRENT_REQUESTS=7)) == 7
