"""Swagger UI and ReDoc are served by Keel itself, with no inline script, under their own CSP."""

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.api.docs import DOCS_CSP, REDOC_CSP
from app.config import Settings

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)


@pytest.mark.parametrize(("page", "csp"), [("/docs", DOCS_CSP), ("/redoc", REDOC_CSP)])
async def test_docs_pages_load_only_local_assets(
    client: httpx.AsyncClient, page: str, csp: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not INLINE_SCRIPT.search(html)  # the CSP allows script-src 'self' only
    assert "<style" not in html
    assert "http://" not in html
    assert "https://" not in html  # no CDN, no web fonts
    assert response.headers["content-security-policy"] == csp
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert assets
    for asset in assets:
        loaded = await client.get(asset)
        assert loaded.status_code == 200, asset
        assert len(loaded.content) > 0


async def test_swagger_is_pointed_at_the_openapi_document(client: httpx.AsyncClient) -> None:
    html = (await client.get("/docs")).text
    assert 'data-openapi-url="/api/v1/openapi.json"' in html
    init = (await client.get("/docs/assets/swagger-init.js")).text
    assert "SwaggerUIBundle" in init
    assert (await client.get("/api/v1/openapi.json")).status_code == 200


async def test_redoc_starts_from_its_element(client: httpx.AsyncClient) -> None:
    html = (await client.get("/redoc")).text
    assert '<redoc spec-url="/api/v1/openapi.json">' in html


async def test_redoc_finds_its_logo_where_it_looks_for_it(client: httpx.AsyncClient) -> None:
    logo = await client.get("/redoc/logo-mini.svg")  # location.pathname + "/logo-mini.svg"
    assert logo.status_code == 200
    assert logo.headers["content-type"] == "image/svg+xml"
    assert logo.content.lstrip().startswith(b"<svg")


async def test_the_upstream_licences_are_served_with_the_assets(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs/assets/swagger/LICENSE")).status_code == 200
    redoc = await client.get("/docs/assets/redoc/redoc.standalone.js.LICENSE.txt")
    assert redoc.status_code == 200


@pytest.mark.parametrize("prefix", ["/api/v1", "/edge/api/v2"])
async def test_the_token_url_is_the_token_routes_absolute_path(
    make_client: Callable[[Settings], Any], make_settings: Callable[..., Settings], prefix: str
) -> None:
    # Swagger UI resolves a relative tokenUrl against the page, not the document: /auth/token.
    async with make_client(make_settings(API_V1_PREFIX=prefix)) as client:
        document = (await client.get(f"{prefix}/openapi.json")).json()
        flows = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
        assert flows["password"]["tokenUrl"] == f"{prefix}/auth/token"
        form = {"username": "nobody@example.com", "password": "wrong-password-123"}
        assert (await client.post(flows["password"]["tokenUrl"], data=form)).status_code == 401
