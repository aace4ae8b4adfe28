"""Swagger UI at /docs and ReDoc at /redoc, with every asset served by Keel itself.

FastAPI's built-in pages load their scripts from a CDN and start them with an inline script;
these pages use the Swagger UI and ReDoc builds shipped by `fastapi-standalone-docs` (MIT, with
the upstream licences) and a start-up script file, so they work offline and under a CSP with
`script-src 'self'`.
"""

from html import escape
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from app.dependencies import oauth2_scheme

ASSETS_URL = "/docs/assets"
TOKEN_ROUTE_NAME = "login"  # noqa: S105 - the token endpoint's route name, no secret
# Scripts, styles, images and API calls from Keel alone; both UIs draw icons as data: SVGs.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# ReDoc also writes <style> elements and runs its search in a blob: worker (checked in a real
# browser by tests/browser/test_docs_page.py).
REDOC_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_OWN_ASSETS = Path(__file__).with_name("docs_assets")
# ReDoc's sidebar footer loads its logo from `location.pathname + "/logo-mini.svg"`.
_REDOC_LOGO = Path(str(files("fastapi_standalone_docs") / "static" / "redoc" / "logo-mini.svg"))
_PAGE_HEAD = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" type="image/png" href="{assets}/fastapi/favicon.png">
"""


def _swagger_page(title: str, openapi_url: str, assets: str) -> str:
    return (
        _PAGE_HEAD.format(title=title, assets=assets)
        + f'<link rel="stylesheet" href="{assets}/swagger/swagger-ui.css">\n</head>\n<body>\n'
        + f'<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>\n'
        + f'<script src="{assets}/swagger/swagger-ui-bundle.js"></script>\n'
        + f'<script src="{assets}/swagger-init.js"></script>\n</body>\n</html>\n'
    )


def _redoc_page(title: str, openapi_url: str, assets: str) -> str:
    # ReDoc starts by itself on a <redoc spec-url> element: no script of ours at all.
    return (
        _PAGE_HEAD.format(title=title, assets=assets)
        + f'<link rel="stylesheet" href="{assets}/redoc.css">\n</head>\n<body>\n'
        + f'<redoc spec-url="{openapi_url}"></redoc>\n'
        + f'<script src="{assets}/redoc/redoc.standalone.js"></script>\n</body>\n</html>\n'
    )


class DocsAssets(StaticFiles):
    """The docs' static files, under the docs' CSP."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = DOCS_CSP
        return response


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets; the app's own `openapi_url` must be set."""
    openapi_path = app.openapi_url
    if openapi_path is None:
        raise RuntimeError("self-hosted docs need the app's openapi_url")
    title = escape(app.title)
    app.mount(
        ASSETS_URL,
        DocsAssets(directory=_OWN_ASSETS, packages=[("fastapi_standalone_docs", "static")]),
        name="docs-assets",
    )

    def urls(request: Request) -> tuple[str, str]:
        root = request.scope.get("root_path", "")
        return escape(root + openapi_path), escape(root + ASSETS_URL)

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        openapi_url, assets = urls(request)
        page = _swagger_page(f"{title} - Swagger UI", openapi_url, assets)
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        openapi_url, assets = urls(request)
        page = _redoc_page(f"{title} - ReDoc", openapi_url, assets)
        return HTMLResponse(page, headers={"Content-Security-Policy": REDOC_CSP})

    @app.get("/redoc/logo-mini.svg", include_in_schema=False)
    async def redoc_logo() -> FileResponse:
        return FileResponse(_REDOC_LOGO, media_type="image/svg+xml")

    document_token_url(app)


def document_token_url(app: FastAPI) -> None:
    """Make the OpenAPI password flow's tokenUrl the absolute path of this app's token route.

    Swagger UI resolves a relative tokenUrl against the page's origin, not the document's URL,
    and API_V1_PREFIX is configurable: the document carries the path `url_path_for` gives.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = app.openapi_schema
        if schema is None:
            schema = generate()  # builds and caches app.openapi_schema, edited in place
            scheme = schema["components"]["securitySchemes"][oauth2_scheme.scheme_name]
            scheme["flows"]["password"]["tokenUrl"] = app.url_path_for(TOKEN_ROUTE_NAME)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented extension point
