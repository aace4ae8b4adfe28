"""Every non-2xx answer, framework ones included, is the one envelope of CONTRACT.md section 4."""

import httpx
import pytest
from fastapi import FastAPI

from app.core.exceptions import ConflictError

ENVELOPE_KEYS = {"error", "message", "details", "request_id"}


async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    body = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["error"] == "not_found"


async def test_405_lists_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    response = await client.delete("/health/live")
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    assert response.headers["allow"] == "GET"


async def test_validation_error_details(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.get("/_test/number")
    async def number(n: int) -> dict[str, int]:
        return {"n": n}

    response = await client.get("/_test/number", params={"n": "abc"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["details"] == [
        {
            "field": "query.n",
            "message": "Input should be a valid integer, unable to parse string as an integer",
            "type": "int_parsing",
        }
    ]


async def test_app_exception_renders_envelope(app: FastAPI, client: httpx.AsyncClient) -> None:
    @app.get("/_test/conflict")
    async def conflict() -> None:
        raise ConflictError("Email already registered")

    response = await client.get("/_test/conflict")
    assert response.status_code == 409
    assert response.json()["error"] == "conflict"
    assert response.json()["message"] == "Email already registered"


async def test_unhandled_error_is_500_without_internals(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    @app.get("/_test/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal detail")

    response = await client.get("/_test/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["error"] == "internal_error"
    assert "secret" not in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml"])
async def test_json_route_refuses_other_media_types(
    app: FastAPI, client: httpx.AsyncClient, content_type: str
) -> None:
    from pydantic import BaseModel

    class Body(BaseModel):
        name: str

    @app.post("/_test/json")
    async def json_body(body: Body) -> Body:
        return body

    response = await client.post(
        "/_test/json", content=b'{"name": "x"}', headers={"content-type": content_type}
    )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"
    ok = await client.post("/_test/json", json={"name": "x"})
    assert ok.status_code == 200
