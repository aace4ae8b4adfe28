"""Swagger UI and ReDoc are served by Keel itself, with no inline script, under their own CSP."""

import re

import httpx
import pytest

from app.core.middleware import DOCS_CSP

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(client: httpx.AsyncClient, page: str) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    html = response.text
    assert not INLINE_SCRIPT.search(html)  # the CSP allows script-src 'self' only
    assert "<style" not in html
    assert "http://" not in html
    assert "https://" not in html  # no CDN, no web fonts
    assert response.headers["content-security-policy"] == DOCS_CSP
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


async def test_the_upstream_licences_are_served_with_the_assets(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs/assets/swagger/LICENSE")).status_code == 200
    redoc = await client.get("/docs/assets/redoc/redoc.standalone.js.LICENSE.txt")
    assert redoc.status_code == 200
