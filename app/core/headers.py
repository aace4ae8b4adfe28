"""The response headers of CONTRACT.md section 5, added to every answer by one middleware."""

from time import perf_counter
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings

API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
# The docs pages take scripts, styles, images and API calls from Keel alone (no inline script, no
# CDN, no fonts); both UIs draw icons as data: SVGs. Swagger UI (/docs, its assets) styles
# elements through the CSSOM, which style-src does not govern: it needs no inline style.
DOCS_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
# ReDoc (/redoc) writes <style> elements (styled-components) and runs its search in a blob:
# worker: those two on top of the Swagger UI policy, nothing more. Checked in a real browser by
# tests/browser/test_docs_page.py.
REDOC_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PERMISSIONS_POLICY: Final = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)


def csp_for(path: str) -> str:
    """The Content-Security-Policy of a page: the docs UIs need more than the API's `'none'`."""
    if path == "/docs" or path.startswith("/docs/"):
        return DOCS_CSP
    if path == "/redoc":
        return REDOC_CSP
    return API_CSP


class ResponseHeadersMiddleware:
    """Security headers, CSP, `X-Response-Time`, and `Cache-Control: no-store` on API answers.

    A header the app chose itself (a stricter CSP, its own Cache-Control) is kept, and a
    `Server` header is dropped.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        headers = {
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "cross-origin-opener-policy": "same-origin",
            "permissions-policy": PERMISSIONS_POLICY,
            "x-xss-protection": "0",  # OWASP: the old XSS auditor's `1; mode=block` can cause XSS
        }
        if settings.HSTS_SECONDS > 0:
            headers["strict-transport-security"] = (
                f"max-age={settings.HSTS_SECONDS}; includeSubDomains"
            )
        self.headers = [(name.encode(), value.encode()) for name, value in headers.items()]
        self.private_prefix = settings.API_V1_PREFIX + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        path: str = scope["path"]
        extra = [*self.headers, (b"content-security-policy", csp_for(path).encode())]
        # API and credentialed answers are per caller: never let a browser or proxy store them.
        if path.startswith(self.private_prefix) or any(
            name in (b"authorization", b"cookie") for name, _ in scope["headers"]
        ):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", ()) if h[0] != b"server"]
                present = {name for name, _ in headers}
                elapsed = f"{(perf_counter() - start) * 1000:.2f}ms".encode()
                message["headers"] = [
                    *headers,
                    *(h for h in extra if h[0] not in present),
                    (b"x-response-time", elapsed),
                ]
            await send(message)

        await self.app(scope, receive, send_with_headers)
