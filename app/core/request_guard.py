"""Bounds on every request: body size, a deadline, and the 500 envelope for unhandled errors.

It sits inside CORS and the header layer, so the 413, 503 and 500 it answers carry the same
headers as any other response.
"""

import asyncio

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.exceptions import error_response

logger = structlog.get_logger("app.errors")


class PayloadTooLargeError(HTTPException):
    """Raised from `receive` once a body passes the limit.

    An HTTPException, so that FastAPI's body parsing re-raises it untouched (any other error there
    becomes a 400) and the app's handler renders the 413 envelope; raised outside the app (e.g.
    while the rate limiter reads a login form) the guard renders it.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body exceeds {limit} bytes")


def _content_length(scope: Scope) -> bytes | None:
    name: bytes
    value: bytes
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value
    return None


def _bounded(receive: Receive, limit: int) -> Receive:
    """`receive`, counting body bytes as they arrive: nothing is buffered here."""
    received = 0

    async def bounded_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise PayloadTooLargeError(limit)
        return message

    return bounded_receive


class RequestGuardMiddleware:
    """413 past `max_body_bytes`, 503 past `timeout_seconds` (work cancelled), 500 on errors."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, timeout_seconds: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None:
            if not declared.isdigit():
                await error_response(400, "Invalid Content-Length header")(scope, receive, send)
                return
            if int(declared) > self.max_body_bytes:
                # Refused before a byte of the body is read.
                exc = PayloadTooLargeError(self.max_body_bytes)
                await error_response(413, exc.detail)(scope, receive, send)
                return
        # Counted even with a Content-Length: chunked bodies have none, and not every server
        # holds a body to its declared length.
        receive = _bounded(receive, self.max_body_bytes)
        started = False

        async def send_tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        deadline = asyncio.timeout(self.timeout_seconds)
        try:
            async with deadline:
                await self.app(scope, receive, send_tracking)
        except TimeoutError as exc:
            if not deadline.expired():  # a TimeoutError of the app's own: an ordinary error
                await self._unhandled(exc, started, scope, receive, send)
                return
            logger.warning("request_deadline_exceeded", timeout_seconds=self.timeout_seconds)
            if started:
                raise
            await error_response(503, "The request took too long and was cancelled")(
                scope, receive, send
            )
        except PayloadTooLargeError as exc:
            if started:
                raise
            await error_response(413, exc.detail)(scope, receive, send)
        except Exception as exc:
            await self._unhandled(exc, started, scope, receive, send)

    @staticmethod
    async def _unhandled(
        exc: Exception, started: bool, scope: Scope, receive: Receive, send: Send
    ) -> None:
        logger.error("unhandled_exception", exc_info=exc)
        if started:  # the response has begun: only the server can end it now
            raise exc
        await error_response(500, "Internal server error")(scope, receive, send)
