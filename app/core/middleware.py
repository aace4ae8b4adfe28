"""The outermost layer: request id, security headers, timing and the access log, in one pass.

Pure ASGI: one `send` wrapper per request does what four separate layers would, and contextvars
set here are seen by the endpoint and every log line of the request.
"""

import re
import uuid
from collections.abc import Sequence
from time import perf_counter
from typing import Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.core.context import request_id_var, user_id_var
from app.core.exceptions import error_response
from app.core.net import Network, client_ip

logger = structlog.get_logger("app.access")
error_logger = structlog.get_logger("app.errors")

Header = tuple[bytes, bytes]
_VALID_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._-]{1,128}")
_MAX_LOGGED_PATH: Final = 256

API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"
# Swagger UI and ReDoc: scripts and styles from Keel only (no inline script); the inline
# *styles* are the ones both UIs set on elements at run time; ReDoc's search runs in a blob worker.
DOCS_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PERMISSIONS_POLICY: Final = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)
NO_STORE: Final = (b"cache-control", b"no-store")


def security_headers(csp: str, hsts_seconds: int) -> list[Header]:
    """The headers of CONTRACT.md section 5 that do not depend on the request."""
    headers = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "content-security-policy": csp,
        "cross-origin-opener-policy": "same-origin",
        "cross-origin-resource-policy": "same-origin",
        "permissions-policy": PERMISSIONS_POLICY,
        "x-xss-protection": "0",  # OWASP: the old XSS auditor's `1; mode=block` can cause XSS
    }
    if hsts_seconds > 0:
        headers["strict-transport-security"] = f"max-age={hsts_seconds}; includeSubDomains"
    return [(name.encode(), value.encode()) for name, value in headers.items()]


def _request_id(candidate: bytes | None) -> str:
    """The caller's X-Request-ID when it is safe to echo and log, a fresh UUID otherwise."""
    if candidate is not None and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate.decode("ascii")
    return str(uuid.uuid4())


class EdgeMiddleware:
    """Request id, security headers, `X-Response-Time`, one access line, and a last-resort 500.

    It wraps everything else, so every response (CORS refusals, 413, 429, 503, 500) gets the
    headers. Unhandled errors are normally turned into the 500 envelope by the request guard
    further in; anything that still escapes gets one here rather than reaching Starlette's
    ServerErrorMiddleware, which sits outside all user middleware.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.api_headers = security_headers(API_CSP, settings.HSTS_SECONDS)
        self.docs_headers = security_headers(DOCS_CSP, settings.HSTS_SECONDS)
        self.docs_paths = ("/docs", "/redoc")
        self.private_prefix = settings.API_V1_PREFIX + "/"
        self.trusted_proxies: Sequence[Network] = settings.TRUSTED_PROXIES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        incoming_id = None
        authenticated = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming_id = value
            elif name in (b"authorization", b"cookie"):
                authenticated = True
        request_id = _request_id(incoming_id)
        path: str = scope["path"]
        extra = self._headers_for(path)
        request_id_header = (b"x-request-id", request_id.encode())
        # API answers are per caller: never let a browser or proxy cache them.
        no_store = authenticated or path.startswith(self.private_prefix)
        status = 0

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = f"{(perf_counter() - start) * 1000:.2f}ms".encode()
                headers = [h for h in message.get("headers", ()) if h[0] != b"server"]
                present = {name for name, _ in headers}
                # A header the endpoint chose itself (a stricter CSP, a Cache-Control) wins.
                headers += [h for h in extra if h[0] not in present]
                if no_store and b"cache-control" not in present:
                    headers.append(NO_STORE)
                headers.append(request_id_header)
                headers.append((b"x-response-time", elapsed))
                message["headers"] = headers
            await send(message)

        request_token = request_id_var.set(request_id)
        user_token = user_id_var.set(None)
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if status:  # the response has begun (and the guard logged it): the server ends it
                raise
            error_logger.error("unhandled_exception", exc_info=exc)
            await error_response(500, "Internal server error")(scope, receive, send_with_headers)
        finally:
            self._log(scope, status, start)
            user_id_var.reset(user_token)
            request_id_var.reset(request_token)

    def _headers_for(self, path: str) -> list[Header]:
        if path.startswith(self.docs_paths) and (
            path in self.docs_paths or path.startswith("/docs/")
        ):
            return self.docs_headers
        return self.api_headers

    def _log(self, scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        logger.info(
            "request",
            method=scope["method"],
            route=getattr(route, "path", None),
            path=scope["path"][:_MAX_LOGGED_PATH],
            status=status or None,
            duration_ms=round((perf_counter() - start) * 1000, 2),
            client_ip=client_ip(scope, self.trusted_proxies),
        )
