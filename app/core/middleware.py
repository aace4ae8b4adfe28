"""The edge: the pure-ASGI layers every request passes through, one concern each.

`create_app` installs them in the order `edge_layers` lists, with the rate limiter just inside.
"""

import asyncio
import re
import uuid
from time import perf_counter
from typing import Final

import structlog
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from app.config import Settings
from app.core.cors import EnvelopeCORSMiddleware
from app.core.exceptions import (
    BadRequestError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    escaped_exception_response,
)
from app.core.headers import ResponseHeadersMiddleware
from app.core.metrics import RequestMetricsMiddleware
from app.core.routes import RouteTemplates

logger = structlog.get_logger("app.edge")
access_logger = structlog.get_logger("app.access")

VALID_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._-]{1,128}")
MAX_LOGGED_PATH: Final = 256


def new_request_id() -> str:
    return str(uuid.uuid4())


def client_ip(scope: Scope) -> str:
    """The client's address (the proxy headers layer has already applied `TRUSTED_PROXIES`)."""
    client = scope.get("client")
    return client[0] if client else "unknown"


class RequestIdMiddleware:
    """`X-Request-ID`: the caller's when it is safe to echo and log, a fresh UUID otherwise.

    Bound to structlog's context for every log line of the request (and the error envelope's
    `request_id`), and echoed on the answer.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id")  # a repeated header: the last
        if incoming is not None and VALID_REQUEST_ID.fullmatch(incoming):
            request_id = incoming.decode("ascii")
        else:
            request_id = new_request_id()
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        structlog.contextvars.clear_contextvars()  # the log context starts empty for each request
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()


class AccessLogMiddleware:
    """One line per request: method, route template, status, duration and client address.

    The request id and user id come from the log context. The concrete path is logged only when
    no route matched (it may carry ids or tokens otherwise); status is null when no answer began.
    """

    def __init__(self, app: ASGIApp, *, route_template: RouteTemplates) -> None:
        self.app = app
        self.route_template = route_template

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

        start = perf_counter()
        try:
            await self.app(scope, receive, send_recording_status)
        finally:
            route = self.route_template(scope)
            access_logger.info(
                "request",
                method=scope["method"],
                route=route,
                path=None if route else scope["path"][:MAX_LOGGED_PATH],
                status=status,
                duration_ms=round((perf_counter() - start) * 1000, 2),
                client_ip=client_ip(scope),
            )


class ErrorEnvelopeMiddleware:
    """Answers an exception raised inside it with the error envelope (500 when unexpected).

    Starlette's own ServerErrorMiddleware sits outside every user middleware, so its 500 would
    miss the request id, the security and the CORS headers. Once the answer has begun, only the
    server can end it: the exception goes on.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_recording_start(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, send_recording_start)
        except Exception as exc:
            if started:
                raise
            response = await escaped_exception_response(Request(scope), exc)
            await response(scope, receive, send)


class BodyLimitMiddleware:
    """Refuses bodies over `MAX_REQUEST_BODY_BYTES` with 413: by `Content-Length` before a byte
    is read, and by counting what arrives (chunked bodies declare no length)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
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


def edge_layers(settings: Settings) -> list[Middleware]:
    """The edge, outermost first. Each layer sees the answers of the layers inside it."""
    route_template = RouteTemplates()
    proxies = [str(network) for network in settings.TRUSTED_PROXIES]
    return [
        # X-Forwarded-For/-Proto believed from these peers only; every server leaves them alone.
        *([Middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)] if proxies else []),
        Middleware(RequestIdMiddleware),
        Middleware(AccessLogMiddleware, route_template=route_template),
        Middleware(RequestMetricsMiddleware, route_template=route_template),
        Middleware(ResponseHeadersMiddleware, settings=settings),
        Middleware(EnvelopeCORSMiddleware, settings=settings),
        # The layers below answer by raising; this one renders their envelopes.
        Middleware(ErrorEnvelopeMiddleware),
        Middleware(BodyLimitMiddleware, max_body_bytes=settings.MAX_REQUEST_BODY_BYTES),
        Middleware(DeadlineMiddleware, timeout_seconds=settings.REQUEST_TIMEOUT_SECONDS),
    ]


class EdgeMiddleware:
    """The edge layers around any ASGI app, as one ASGI app."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        for cls, args, kwargs in reversed(edge_layers(settings)):
            app = cls(app, *args, **kwargs)
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
