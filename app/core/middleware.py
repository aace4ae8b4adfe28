"""The edge: pure-ASGI layers every request passes through, one concern each (CONTRACT.md 4-5)."""

import asyncio
import re
import uuid
from time import perf_counter
from typing import Final

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.config import Settings
from app.core import metrics
from app.core.admission import REFUSED_SCOPE_KEY, AdmissionMiddleware, admission_limit
from app.core.exceptions import (
    AppException,
    BadRequestError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    app_exception_handler,
    error_response,
    http_exception_handler,
    unhandled_exception_handler,
)
from app.core.routes import RouteTemplates

logger = structlog.get_logger("app.edge")
access_logger = structlog.get_logger("app.access")

VALID_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._-]{1,128}")
MAX_LOGGED_PATH: Final = 256
API_CSP: Final = "default-src 'none'; frame-ancestors 'none'"  # the docs set their own
PERMISSIONS_POLICY: Final = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), "
    "microphone=(), payment=(), usb=()"
)
CORS_METHODS: Final = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
CORS_HEADERS: Final = ("Authorization", "Content-Type", "X-Request-ID")
# Headers a browser script may read from a cross-origin answer.
CORS_EXPOSED_HEADERS: Final = (
    "X-Request-ID",
    "X-Response-Time",
    "Location",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "RateLimit",
    "RateLimit-Policy",
)


def new_request_id() -> str:
    return str(uuid.uuid4())


def client_ip(scope: Scope) -> str:
    """The client's address (the proxy headers layer has already applied `TRUSTED_PROXIES`)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


def last_header(scope: Scope, name: bytes) -> bytes | None:
    """A request header's value; of a repeated one, the last."""
    return dict(scope["headers"]).get(name)


class RequestIdMiddleware:
    """`X-Request-ID`: the caller's when safe to echo, else a UUID; bound to the log context."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = last_header(scope, b"x-request-id")
        if incoming is not None and VALID_REQUEST_ID.fullmatch(incoming):
            request_id = incoming.decode("ascii")
        else:
            request_id = new_request_id()
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()


class RequestRecordMiddleware:
    """Records each request as it ends: its access log line and its Prometheus metrics.

    Metrics by route template (bounded labels); the log line has the template and the path.
    No answer begun: status null in the log, 499 in the metrics. A request refused by admission
    control is counted, not logged (its layer logs the refusals, at most once a second).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.route_template = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | None = None

        async def send_recording_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = metrics.method_label(scope["method"])
        in_progress = metrics.in_progress(method)
        in_progress.inc()
        start = perf_counter()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            in_progress.dec()
            seconds = perf_counter() - start
            route = self.route_template(scope)
            answered = metrics.CLIENT_CLOSED if status is None else status
            metrics.record_request(method, route, answered, seconds)
            # A flood of refusals must not flood the log: admission logs them, throttled.
            if REFUSED_SCOPE_KEY not in scope:
                access_logger.info(
                    "request",
                    method=scope["method"],
                    route=route,
                    # The path as requested, without its query string (cursors travel there).
                    path=scope["path"][:MAX_LOGGED_PATH],
                    status=status,
                    duration_ms=round(seconds * 1000, 2),
                    client_ip=client_ip(scope),
                )


class ResponseHeadersMiddleware:
    """Security headers, CSP, `X-Response-Time`, and `Cache-Control: no-store` on API answers.

    A header the app set itself (the docs' CSP, its own Cache-Control) is kept; `Server` goes.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        headers = {
            "x-content-type-options": "nosniff",
            "x-frame-options": "DENY",
            "referrer-policy": "no-referrer",
            "cross-origin-opener-policy": "same-origin",
            "permissions-policy": PERMISSIONS_POLICY,
            "x-xss-protection": "0",  # OWASP: the old auditor's `1; mode=block` can cause XSS
            "content-security-policy": API_CSP,
        }
        if settings.HSTS_SECONDS > 0:
            hsts = f"max-age={settings.HSTS_SECONDS}; includeSubDomains"
            headers["strict-transport-security"] = hsts
        self.headers = [(name.encode(), value.encode()) for name, value in headers.items()]
        self.private_prefix = settings.API_V1_PREFIX + "/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = perf_counter()
        path: str = scope["path"]
        extra = self.headers
        # API and credentialed answers are per caller: no browser or proxy may store them.
        if path.startswith(self.private_prefix) or any(
            name in (b"authorization", b"cookie") for name, _ in scope["headers"]
        ):
            extra = [*self.headers, (b"cache-control", b"no-store")]

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


class EnvelopeCORSMiddleware(CORSMiddleware):
    """Starlette's CORSMiddleware for `CORS_ORIGINS`; a refused preflight is the 400 envelope."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        super().__init__(
            app,
            allow_origins=settings.CORS_ORIGINS,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            # Browsers refuse `*` with credentials; echoing any origin would leak the session.
            allow_credentials="*" not in settings.CORS_ORIGINS,
            expose_headers=CORS_EXPOSED_HEADERS,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette adds `Vary: Origin` to every answer: needed only when some origin is allowed.
        if self.allow_origins or any(name == b"origin" for name, _ in scope.get("headers", ())):
            await super().__call__(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        entity = ("content-length", "content-type")
        headers = {k: v for k, v in response.headers.items() if k.lower() not in entity}
        message = bytes(response.body).decode()  # e.g. "Disallowed CORS origin, method"
        return error_response(400, message, None, headers)


class BodyLimitMiddleware:
    """413 for a body over `MAX_REQUEST_BODY_BYTES`: by `Content-Length` before it is read, and
    by counting what arrives (a chunked body declares no length)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = last_header(scope, b"content-length")
        if declared is not None and not declared.isdigit():
            raise BadRequestError("Invalid Content-Length header")
        if declared is not None and int(declared) > self.limit:
            raise PayloadTooLargeError(self.limit)
        received = 0

        async def receive_counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise PayloadTooLargeError(self.limit)
            return message

        await self.app(scope, receive_counting, send)


class DeadlineMiddleware:
    """Cancels a request's work after `REQUEST_TIMEOUT_SECONDS` and answers 503."""

    def __init__(self, app: ASGIApp, *, timeout_seconds: float) -> None:
        self.app = app
        self.timeout = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                await self.app(scope, receive, send)
        except TimeoutError:
            if not deadline.expired():
                raise  # the app's own TimeoutError: an ordinary error, not the deadline
            logger.warning("request_deadline_exceeded", timeout_seconds=self.timeout)
            raise ServiceUnavailableError("The request took too long and was cancelled") from None


EDGE_ERROR_HANDLERS: Final = {
    AppException: app_exception_handler,
    HTTPException: http_exception_handler,
    Exception: unhandled_exception_handler,
}


def edge_layers(settings: Settings) -> list[Middleware]:
    """The edge, outermost first. Each layer sees the answers of the layers inside it."""
    proxies = [str(network) for network in settings.TRUSTED_PROXIES]
    return [
        # X-Forwarded-For/-Proto believed from these peers only; the servers leave them alone.
        *([Middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)] if proxies else []),
        Middleware(RequestIdMiddleware),
        Middleware(RequestRecordMiddleware),
        Middleware(ResponseHeadersMiddleware, settings=settings),
        Middleware(EnvelopeCORSMiddleware, settings=settings),
        # What the layers below and the app raise, as its envelope; anything unexpected as the
        # 500 one, inside the request id, header and CORS layers. (Starlette's own 500 handler
        # sits outside every middleware: only what fails after the answer began reaches it.)
        Middleware(ExceptionMiddleware, handlers=EDGE_ERROR_HANDLERS),
        # Past MAX_CONCURRENT_REQUESTS: the 503 at once, before any token, Redis or database
        # work (the rate limiter and the app sit inside), with the layers above's headers.
        Middleware(
            AdmissionMiddleware,
            limit=admission_limit(settings),
            queue_timeout_ms=settings.ADMISSION_QUEUE_TIMEOUT_MS,
        ),
        Middleware(BodyLimitMiddleware, max_body_bytes=settings.MAX_REQUEST_BODY_BYTES),
        Middleware(DeadlineMiddleware, timeout_seconds=settings.REQUEST_TIMEOUT_SECONDS),
    ]


class EdgeMiddleware:
    """The edge layers around any ASGI app, as one ASGI app (for tests and other apps)."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        for cls, args, kwargs in reversed(edge_layers(settings)):
            app = cls(app, *args, **kwargs)
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
