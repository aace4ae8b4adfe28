"""Request id, security headers, timing and the 500 envelope on every kind of response."""

import os
import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI

from app.config import Settings
from app.core.exceptions import UnauthorizedError
from app.core.middleware import EdgeMiddleware, new_request_id
from app.main import create_app
from tests.conftest import _ClientContext

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",  # CONTRACT.md 5
    "cross-origin-opener-policy": "same-origin",
    "x-xss-protection": "0",
}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
RESPONSE_TIME = re.compile(r"^\d+\.\d{2}ms$")


def add_test_routes(app: FastAPI) -> None:
    @app.get("/api/v1/_test/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/api/v1/_test/unauthorized")
    async def unauthorized() -> None:
        raise UnauthorizedError()

    @app.get("/api/v1/_test/number")
    async def number(n: int) -> dict[str, int]:
        return {"n": n}

    @app.get("/api/v1/_test/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")


def assert_edge_headers(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "permissions-policy" in response.headers
    assert "server" not in response.headers
    assert "strict-transport-security" not in response.headers  # HSTS_SECONDS=0 by default
    assert RESPONSE_TIME.match(response.headers["x-response-time"])
    assert response.headers["x-request-id"]


# (path, extra settings, requests before the one checked) -> expected status
CASES = [
    ("/api/v1/_test/ok", {}, 0, 200),
    ("/api/v1/_test/unauthorized", {}, 0, 401),
    ("/api/v1/no/such/route", {}, 0, 404),
    ("/api/v1/_test/number?n=abc", {}, 0, 422),
    ("/api/v1/_test/ok", {"RATE_LIMIT_REQUESTS": 1}, 1, 429),
    ("/api/v1/_test/boom", {}, 0, 500),
]


@pytest.mark.parametrize("case", CASES, ids=[str(case[-1]) for case in CASES])
async def test_every_response_carries_the_edge_headers(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    case: tuple[str, dict[str, Any], int, int],
) -> None:
    path, overrides, before, status = case
    context = make_client(make_settings(**overrides))
    add_test_routes(context.app)
    async with context as client:
        for _ in range(before):
            await client.get(path)
        response = await client.get(path)
    assert response.status_code == status
    assert_edge_headers(response)
    assert response.headers["cache-control"] == "no-store"  # an API answer
    if status >= 400:
        body = response.json()
        assert body["request_id"] == response.headers["x-request-id"]
    if status == 500:
        assert body["error"] == "internal_error"
        assert "secret" not in response.text


async def test_hsts_when_configured(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    async with make_client(make_settings(HSTS_SECONDS=31536000)) as client:
        response = await client.get("/health/live")
    assert response.headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"


async def test_health_is_cacheable_but_authenticated_calls_are_not(
    client: httpx.AsyncClient,
) -> None:
    assert "cache-control" not in (await client.get("/health/live")).headers
    authenticated = await client.get("/health/live", headers={"Authorization": "Bearer x"})
    assert authenticated.headers["cache-control"] == "no-store"


def directives(policy: str) -> dict[str, set[str]]:
    """A Content-Security-Policy header as {directive: sources}."""
    parsed = (part.split() for part in policy.split(";") if part.strip())
    return {name: set(sources) for name, *sources in parsed}


async def test_docs_get_their_own_csp(client: httpx.AsyncClient) -> None:
    """The docs may load their own scripts, never inline ones; the API stays locked down."""
    for path in ("/docs", "/redoc", "/docs/assets/swagger-init.js"):
        policy = directives((await client.get(path)).headers["content-security-policy"])
        scripts = policy.get("script-src", policy["default-src"])
        assert "'self'" in scripts, path
        assert "'unsafe-inline'" not in scripts, path
        assert "'unsafe-eval'" not in scripts, path
        assert policy["frame-ancestors"] == {"'none'"}, path
    api = await client.get("/api/v1/openapi.json")
    assert directives(api.headers["content-security-policy"]) == {
        "default-src": {"'none'"},
        "frame-ancestors": {"'none'"},
    }


@pytest.mark.parametrize(
    "request_id", ["abc", "a" * 128, "0f1e2d3c-abcd.EF_gh", "trace.id_with-all.allowed_chars"]
)
async def test_valid_request_id_is_echoed(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/no/such/route", headers={"X-Request-ID": request_id})
    assert response.headers["x-request-id"] == request_id
    assert response.json()["request_id"] == request_id


@pytest.mark.parametrize(
    "request_id", ["a" * 129, "has space", 'quo"te', "semi;colon", "ünïcode", "<script>"]
)
async def test_unsafe_request_id_is_replaced(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get(
        "/no/such/route", headers={"X-Request-ID": request_id.encode("utf-8")}
    )
    assert UUID.match(response.headers["x-request-id"])
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_generated_request_ids_are_distinct_version_4_uuids() -> None:
    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    for request_id in ids:
        parsed = uuid.UUID(request_id)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == request_id


def test_forked_workers_generate_different_request_ids() -> None:
    """Gunicorn forks its workers from one process: each must draw its own ids."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id, then out without running pytest's teardown
        os.write(writer, new_request_id().encode())
        os._exit(0)
    os.close(writer)
    _, status = os.waitpid(pid, 0)
    child_id = os.read(reader, 64).decode()
    os.close(reader)
    assert os.waitstatus_to_exitcode(status) == 0
    assert UUID.match(child_id)
    assert child_id != new_request_id()


@pytest.mark.parametrize("raw", [b"abc\r\nX-Injected: 1", b"abc\n", b"\r", b""])
async def test_request_id_with_line_breaks_or_empty_is_replaced(
    settings: Settings, raw: bytes
) -> None:
    """CR/LF cannot pass an HTTP client or server, so the raw ASGI scope carries them here."""
    seen: list[str | None] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(structlog.contextvars.get_contextvars().get("request_id"))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "headers": [(b"x-request-id", raw)],
        "client": ("203.0.113.7", 1),
    }
    await EdgeMiddleware(inner, settings=settings)(scope, receive, send)
    headers = dict(sent[0]["headers"])
    assert UUID.match(headers[b"x-request-id"].decode())
    assert seen == [headers[b"x-request-id"].decode()]
    assert b"x-injected" not in headers


async def test_500_carries_cors_and_request_id(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    origin = "https://app.example.com"
    context = make_client(make_settings(CORS_ORIGINS=origin))
    add_test_routes(context.app)
    async with context as client:
        response = await client.get(
            "/api/v1/_test/boom", headers={"Origin": origin, "X-Request-ID": "req-500"}
        )
    assert response.status_code == 500
    assert response.headers["access-control-allow-origin"] == origin
    assert response.json()["request_id"] == "req-500"


async def test_error_outside_the_guard_still_gets_the_envelope(settings: Settings) -> None:
    """The edge's last resort: a failure in a layer outside the request guard."""

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": None}
    await EdgeMiddleware(broken, settings=settings)(scope, receive, send)
    assert sent[0]["status"] == 500
    assert b'"internal_error"' in sent[1]["body"]
    assert dict(sent[0]["headers"])[b"x-frame-options"] == b"DENY"


async def test_docs_disabled_removes_them(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    app = create_app(make_settings(DOCS_ENABLED=False))
    paths = {getattr(route, "path", None) for route in app.routes}
    assert not paths & {"/docs", "/redoc", "/docs/assets", "/api/v1/openapi.json"}
    async with make_client(make_settings(DOCS_ENABLED=False)) as client:
        assert (await client.get("/docs")).status_code == 404
