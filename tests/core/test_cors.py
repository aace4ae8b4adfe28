"""CORS limited to CORS_ORIGINS; a refused preflight is the 400 envelope."""

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from app.config import Settings
from tests.conftest import _ClientContext

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"


@pytest.fixture
async def cors_client(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(make_settings(CORS_ORIGINS=f"{ALLOWED},https://admin.example.com")) as c:
        yield c


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_allowed_origin_is_echoed(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.get("/health/live", headers={"Origin": ALLOWED})
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]
    assert "Origin" in response.headers["vary"]


async def test_answers_to_requests_without_origin_vary_by_origin(
    cors_client: httpx.AsyncClient,
) -> None:
    # A cache must not hand this answer (no Access-Control-Allow-Origin) to a browser's request.
    response = await cors_client.get("/health/live")
    assert response.status_code == 200
    assert response.headers.get_list("vary") == ["Origin"]
    assert "access-control-allow-origin" not in response.headers
    with_origin = await cors_client.get("/health/live", headers={"Origin": ALLOWED})
    assert with_origin.headers.get_list("vary") == ["Origin"]  # once, from the CORS layer


async def test_without_cors_origins_answers_do_not_vary(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    async with make_client(make_settings()) as client:
        response = await client.get("/health/live")
    assert "vary" not in response.headers


async def test_disallowed_origin_gets_no_allow_origin(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.get("/health/live", headers={"Origin": OTHER})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers


async def test_allowed_preflight(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options("/api/v1/items", headers=preflight(ALLOWED))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["x-request-id"]


async def test_refused_preflight_is_a_400_envelope(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options("/api/v1/items", headers=preflight(OTHER))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    body = response.json()
    assert body["error"] == "bad_request"
    assert "origin" in body["message"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_refused_method_is_a_400_envelope(cors_client: httpx.AsyncClient) -> None:
    response = await cors_client.options("/api/v1/items", headers=preflight(ALLOWED, "TRACE"))
    assert response.status_code == 400
    assert "method" in response.json()["message"]


async def test_wildcard_never_comes_with_credentials(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    async with make_client(make_settings(CORS_ORIGINS="*")) as client:
        response = await client.get("/health/live", headers={"Origin": OTHER})
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers


async def test_no_origins_configured_refuses_every_preflight(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/v1/items", headers=preflight(ALLOWED))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
