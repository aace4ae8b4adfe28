"""The outermost layer: request id, security headers, timing, limits, errors and the access log.

Pure ASGI: one `send` wrapper per request does what five separate layers would, and contextvars
set here are seen by the endpoint and every log line of the request.
"""

import asyncio
import os
import re
from collections.abc import Sequence
from functools import partial
from time import perf_counter
from typing import Final

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.core.body_limit import PayloadTooLargeError, bounded_receive, declared_length_error
from app.core.context import request_id_var, user_id_var
from app.core.cors import EnvelopeCORSMiddleware
from app.core.deadline import Deadline
from app.core.exceptions import error_response
from app.core.logging import access_log
from app.core.net import Network, client_ip
from app.core.routes import route_template

logger = structlog.get_logger("app.edge")
error_logger = structlog.get_logger("app.errors")

Header = tuple[bytes, bytes]
_VALID_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._-]{1,128}")
_MAX_LOGGED_PATH: Final = 256

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
NO_STORE: Final = (b"cache-control", b"no-store")
DEADLINE_EXCEEDED: Final = (503, "The request took too long and was cancelled")


def security_headers(csp: str, hsts_seconds: int) -> list[Header]:
    """The headers of CONTRACT.md section 5 that do not depend on the request."""
    headers = {
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "content-security-policy": csp,
        "cross-origin-opener-policy": "same-origin",
        "permissions-policy": PERMISSIONS_POLICY,
        "x-xss-protection": "0",  # OWASP: the old XSS auditor's `1; mode=block` can cause XSS
    }
    if hsts_seconds > 0:
        headers["strict-transport-security"] = f"max-age={hsts_seconds}; includeSubDomains"
    return [(name.encode(), value.encode()) for name, value in headers.items()]


# Names the edge sets; an answer already carrying one of them takes the slower, careful path.
_MANAGED: Final = frozenset(
    [name for name, _ in security_headers("", 1)] + [b"server", b"cache-control"]
)


def _classify(exc: Exception) -> tuple[int, str]:
    """The status and message an exception that escaped the app is answered with (and log it)."""
    if isinstance(exc, PayloadTooLargeError):
        return 413, exc.detail
    error_logger.error("unhandled_exception", exc_info=exc)
    return 500, "Internal server error"


def _scan(headers: Sequence[Header]) -> tuple[bytes | None, bytes | None, bool]:
    """(X-Request-ID, Content-Length, carries credentials) from the request headers, one pass."""
    request_id = content_length = None
    credentials = False
    for name, value in headers:
        if name == b"x-request-id":
            request_id = value
        elif name == b"content-length":
            content_length = value
        elif name in (b"authorization", b"cookie"):
            credentials = True
    return request_id, content_length, credentials


def new_request_id() -> str:
    """A random (version 4) UUID; formatted here at twice the speed of `str(uuid.uuid4())`."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def _request_id(candidate: bytes | None) -> str:
    """The caller's X-Request-ID when it is safe to echo and log, a fresh UUID otherwise."""
    if candidate is not None and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate.decode("ascii")
    return new_request_id()


class _Response:
    """One request's answer on its way out: adds the edge headers, remembers the status."""

    __slots__ = ("_send", "extra", "no_store", "request_id_header", "start", "status")

    def __init__(self, send: Send, extra: list[Header], request_id: str, no_store: bool) -> None:
        self.start = perf_counter()
        self.status = 0  # until the response starts
        self._send = send
        self.extra = extra
        self.request_id_header = (b"x-request-id", request_id.encode())
        self.no_store = no_store

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            elapsed = f"{(perf_counter() - self.start) * 1000:.2f}ms".encode()
            headers = list(message.get("headers", ()))
            present = {name for name, _ in headers}
            if present.isdisjoint(_MANAGED):  # the usual case: nothing to reconcile
                headers += self.extra
                if self.no_store:
                    headers.append(NO_STORE)
            else:  # a header the endpoint chose itself (a stricter CSP, a Cache-Control) wins
                headers = [h for h in headers if h[0] != b"server"]
                headers += [h for h in self.extra if h[0] not in present]
                if self.no_store and b"cache-control" not in present:
                    headers.append(NO_STORE)
            headers.append(self.request_id_header)
            headers.append((b"x-response-time", elapsed))
            message["headers"] = headers
        await self._send(message)


class EdgeMiddleware:
    """Everything a request passes through first, folded into one layer (one `send` wrapper).

    - request id: the caller's `X-Request-ID` when safe, a UUID otherwise; in a contextvar for
      the error envelope and every log line;
    - security headers, `X-Response-Time`, `Cache-Control: no-store` on API answers;
    - body limit (413, declared or counted) and the request deadline (503, work cancelled);
    - the 500 envelope for unhandled errors: Starlette's ServerErrorMiddleware sits outside all
      user middleware, so its 500 would miss every header above;
    - one access line per request.

    CORS runs just inside (built here, so the errors rendered here get its headers too).
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.cors = EnvelopeCORSMiddleware(app, settings=settings)
        self.app: ASGIApp = self.cors
        self.api_headers = security_headers(API_CSP, settings.HSTS_SECONDS)
        self.docs_headers = security_headers(DOCS_CSP, settings.HSTS_SECONDS)
        self.redoc_headers = security_headers(REDOC_CSP, settings.HSTS_SECONDS)
        self.private_prefix = settings.API_V1_PREFIX + "/"
        self.trusted_proxies: Sequence[Network] = settings.TRUSTED_PROXIES
        self.max_body_bytes = settings.MAX_REQUEST_BODY_BYTES
        self.timeout_seconds = settings.REQUEST_TIMEOUT_SECONDS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming_id, content_length, credentials = _scan(scope["headers"])
        request_id = _request_id(incoming_id)
        path: str = scope["path"]
        # API answers are per caller: never let a browser or proxy cache them.
        no_store = credentials or path.startswith(self.private_prefix)
        response = _Response(send, self._headers_for(path), request_id, no_store)
        request_token = request_id_var.set(request_id)
        user_token = user_id_var.set(None)
        deadline: Deadline | None = None
        try:
            refused = declared_length_error(content_length, self.max_body_bytes)
            if refused is not None:  # answered before a byte of the body is read
                await self._error(scope, receive, response.send, *refused)
                return
            deadline = Deadline(self.timeout_seconds)
            try:
                bounded = bounded_receive(receive, self.max_body_bytes)
                await self.app(scope, bounded, response.send)
            finally:
                deadline.cancel()
        except asyncio.CancelledError:
            if deadline is None or not deadline.caused_cancellation():
                raise  # the server's cancellation (client gone, shutdown), not ours
            logger.warning("request_deadline_exceeded", timeout_seconds=self.timeout_seconds)
            if response.status:  # the response has begun: only the server can end it now
                raise TimeoutError("request deadline exceeded") from None
            await self._error(scope, receive, response.send, *DEADLINE_EXCEEDED)
        except Exception as exc:
            answer = _classify(exc)
            if response.status:
                raise
            await self._error(scope, receive, response.send, *answer)
        finally:
            self._log(scope, response)
            user_id_var.reset(user_token)
            request_id_var.reset(request_token)

    async def _error(
        self, scope: Scope, receive: Receive, send: Send, status: int, message: str
    ) -> None:
        """Answer with the envelope, with CORS headers when the request came from a browser."""
        if any(name == b"origin" for name, _ in scope["headers"]):
            send = partial(self.cors.send, send=send, request_headers=Headers(scope=scope))
        await error_response(status, message)(scope, receive, send)

    def _headers_for(self, path: str) -> list[Header]:
        if path == "/docs" or path.startswith("/docs/"):
            return self.docs_headers
        if path == "/redoc":
            return self.redoc_headers
        return self.api_headers

    def _log(self, scope: Scope, response: "_Response") -> None:
        route = route_template(scope)
        access_log.write(
            {
                "method": scope["method"],
                # The template, never the concrete path (which may carry ids or tokens); the
                # path only when no route matched, for finding what clients get wrong.
                "route": route,
                "path": None if route else scope["path"][:_MAX_LOGGED_PATH],
                "status": response.status or None,
                "duration_ms": round((perf_counter() - response.start) * 1000, 2),
                "client_ip": client_ip(scope, self.trusted_proxies),
            }
        )
