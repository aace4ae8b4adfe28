"""Body-size limit (declared and chunked) and the request deadline."""

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.types import Message

from app.config import Settings
from app.core.middleware import EdgeMiddleware
from tests.conftest import _ClientContext

LIMIT = 1024


def add_body_routes(app: FastAPI, reached: list[str]) -> None:
    @app.post("/api/v1/_test/echo-size")
    async def echo_size(request: Request) -> dict[str, int]:
        reached.append("echo")
        return {"size": len(await request.body())}


async def chunks(total: int, size: int = 256) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"x" * piece


@pytest.fixture
def guarded(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> tuple[_ClientContext, list[str]]:
    context = make_client(make_settings(MAX_REQUEST_BODY_BYTES=LIMIT))
    reached: list[str] = []
    add_body_routes(context.app, reached)
    return context, reached


async def test_declared_length_over_limit_is_refused_before_the_endpoint(
    guarded: tuple[_ClientContext, list[str]],
) -> None:
    context, reached = guarded
    async with context as client:
        response = await client.post("/api/v1/_test/echo-size", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "payload_too_large"
    assert body["request_id"] == response.headers["x-request-id"]
    assert reached == []


async def test_chunked_body_over_limit_is_refused(
    guarded: tuple[_ClientContext, list[str]],
) -> None:
    context, _ = guarded
    async with context as client:
        response = await client.post("/api/v1/_test/echo-size", content=chunks(LIMIT * 4))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("chunked", [False, True])
async def test_body_at_the_limit_passes(
    guarded: tuple[_ClientContext, list[str]], chunked: bool
) -> None:
    context, _ = guarded
    content = chunks(LIMIT) if chunked else b"x" * LIMIT
    async with context as client:
        response = await client.post("/api/v1/_test/echo-size", content=content)
    assert response.status_code == 200
    assert response.json() == {"size": LIMIT}


async def test_json_body_over_limit_is_413_not_400(
    guarded: tuple[_ClientContext, list[str]],
) -> None:
    """FastAPI turns most errors raised while reading a body into 400; not this one."""
    context, _ = guarded
    from pydantic import BaseModel

    class Note(BaseModel):
        text: str

    @context.app.post("/api/v1/_test/note")
    async def note(payload: Note) -> dict[str, int]:
        return {"length": len(payload.text)}

    async with context as client:
        response = await client.post(
            "/api/v1/_test/note",
            content=chunks(LIMIT * 2),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 413


async def test_invalid_content_length_is_400(
    guarded: tuple[_ClientContext, list[str]],
) -> None:
    context, _ = guarded
    async with context as client:
        response = await client.post(
            "/api/v1/_test/echo-size", content=b"abc", headers={"Content-Length": "3x"}
        )
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


async def test_deadline_answers_503_and_cancels_the_work(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    context = make_client(make_settings(REQUEST_TIMEOUT_SECONDS=0.2))
    events: list[str] = []

    @context.app.get("/api/v1/_test/slow")
    async def slow() -> dict[str, bool]:
        events.append("started")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        events.append("finished")
        return {"done": True}

    async with context as client:
        response = await client.get("/api/v1/_test/slow")
    assert response.status_code == 503
    body = response.json()
    assert body["error"] == "service_unavailable"
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert events == ["started", "cancelled"]


async def test_each_request_gets_its_whole_deadline_while_others_are_in_flight(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    """One timer serves every request in flight: it must move on to the next oldest."""
    timeout = 0.3
    context = make_client(make_settings(REQUEST_TIMEOUT_SECONDS=timeout))

    @context.app.get("/api/v1/_test/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(30)
        return {"done": True}

    @context.app.get("/api/v1/_test/fast")
    async def fast() -> dict[str, bool]:
        return {"done": True}

    loop = asyncio.get_running_loop()

    async def timed(client: Any, path: str, delay: float) -> tuple[int, float]:
        await asyncio.sleep(delay)
        started = loop.time()
        response = await client.get(path)
        return response.status_code, loop.time() - started

    async with context as client:
        first, fast_one, second = await asyncio.gather(
            timed(client, "/api/v1/_test/slow", 0),
            timed(client, "/api/v1/_test/fast", 0.05),
            timed(client, "/api/v1/_test/slow", 0.15),
        )
        # Nothing in flight now; a request after the last deadline still gets one.
        late = await timed(client, "/api/v1/_test/slow", 0)

    assert fast_one[0] == 200
    for status, elapsed in (first, second, late):
        assert status == 503
        # Its own full deadline (the loop's clock ticks in milliseconds), and not the 30 s sleep.
        assert timeout - 0.005 <= elapsed < 5


async def test_an_apps_own_timeout_error_is_a_500_not_a_deadline(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    context = make_client(make_settings())

    @context.app.get("/api/v1/_test/own-timeout")
    async def own_timeout() -> None:
        raise TimeoutError("upstream")

    async with context as client:
        response = await client.get("/api/v1/_test/own-timeout")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"


def test_deadlines_fire_in_successive_loops_and_concurrent_threads(
    make_settings: Callable[..., Settings],
) -> None:
    """One edge serves successive event loops in one thread (as in tests) and loops in
    concurrent threads: every request there gets its deadline."""
    edge = EdgeMiddleware(slow_app, settings=make_settings(REQUEST_TIMEOUT_SECONDS=0.05))

    async def request() -> bool:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": None}
        await edge(scope, receive, send)
        return sent[0]["status"] == 503

    assert asyncio.run(request())
    assert asyncio.run(request())  # a new loop in the same thread
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(asyncio.run(request()))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert results == [True, True, True]


async def slow_app(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(5)
