"""The outermost layer: request id, headers, timing, limits, errors, access log and metrics.

Pure ASGI: one pass per request does what a stack of separate layers would, and contextvars
set here are seen by the endpoint and every log line of the request.
"""

import asyncio
import re
from collections.abc import Iterable, Sequence
from functools import partial
from random import getrandbits
from time import perf_counter
from typing import Final

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.core import metrics
from app.core.body_limit import PayloadTooLargeError, declared_length_error
from app.core.context import request_id_var, user_id_var
from app.core.cors import EnvelopeCORSMiddleware
from app.core.exceptions import error_response
from app.core.exchange import Deadlines, Exchange
from app.core.headers import (
    API_CSP,
    DOCS_CSP,
    NO_STORE,
    REDOC_CSP,
    VARY_ORIGIN,
    Header,
    csp_for,
    security_headers,
)
from app.core.logging import access_log
from app.core.net import Network, client_ip
from app.core.routes import RouteTemplates

logger = structlog.get_logger("app.edge")
error_logger = structlog.get_logger("app.errors")

_VALID_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._-]{1,128}")
_MAX_LOGGED_PATH: Final = 256

DEADLINE_EXCEEDED: Final = (503, "The request took too long and was cancelled")


def _classify(exc: Exception) -> tuple[int, str]:
    """The status and message an exception that escaped the app is answered with (and log it)."""
    if isinstance(exc, PayloadTooLargeError):
        return 413, exc.detail
    error_logger.error("unhandled_exception", exc_info=exc)
    return 500, "Internal server error"


def _scan(headers: Iterable[Header]) -> tuple[bytes | None, bytes | None, bool, bool]:
    """(X-Request-ID, Content-Length, carries credentials, has Origin) from the headers."""
    by_name = dict(headers)  # one pass in C; a repeated header keeps its last value
    return (
        by_name.get(b"x-request-id"),
        by_name.get(b"content-length"),
        b"authorization" in by_name or b"cookie" in by_name,
        b"origin" in by_name,
    )


# A version 4 UUID is 122 random bits with the version (4) and variant (0b10) bits fixed.
_UUID4_CLEAR: Final = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID4_SET: Final = (0x4 << 76) | (0x2 << 62)


def new_request_id() -> str:
    """A random (version 4) UUID, at four times the speed of `str(uuid.uuid4())`.

    A request id must be unique, not unguessable: the Mersenne Twister (seeded from the OS, and
    again in every forked worker) spares a system call per request.
    """
    h = "%032x" % (getrandbits(128) & _UUID4_CLEAR | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _request_id(candidate: bytes | None) -> str:
    """The caller's X-Request-ID when it is safe to echo and log, a fresh UUID otherwise."""
    if candidate is not None and _VALID_REQUEST_ID.fullmatch(candidate):
        return candidate.decode("ascii")
    return new_request_id()


class EdgeMiddleware:
    """Everything a request passes through first, folded into one layer (one `send` wrapper).

    - request id: the caller's `X-Request-ID` when safe, a UUID otherwise; in a contextvar for
      the error envelope and every log line;
    - security headers, `X-Response-Time`, `Cache-Control: no-store` on API answers;
    - body limit (413, declared or counted) and the request deadline (503, work cancelled);
    - the 500 envelope for unhandled errors: Starlette's ServerErrorMiddleware sits outside all
      user middleware, so its 500 would miss every header above;
    - one access line and the Prometheus request metrics per request, with the final status of
      every answer, the envelopes rendered here included.

    Requests with an `Origin` header go through CORS just inside (built here, so the errors
    rendered here get its headers too); the others skip it, and their answers say
    `Vary: Origin` when some origin is allowed, as a cache must not hand them to a browser's.
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.cors = EnvelopeCORSMiddleware(app, settings=settings)
        hsts = settings.HSTS_SECONDS
        vary = [VARY_ORIGIN] if settings.CORS_ORIGINS else []
        # Every answer's headers, by page kind and by whether it may be stored; answers to CORS
        # requests get their Vary from the CORS middleware.
        self.headers = {
            (csp, no_store, origin): [
                *security_headers(csp, hsts),
                *([NO_STORE] if no_store else []),
                *([] if origin else vary),
            ]
            for csp in (API_CSP, DOCS_CSP, REDOC_CSP)
            for no_store in (False, True)
            for origin in (False, True)
        }
        self.private_prefix = settings.API_V1_PREFIX + "/"
        self.trusted_proxies: Sequence[Network] = settings.TRUSTED_PROXIES
        self.max_body_bytes = settings.MAX_REQUEST_BODY_BYTES
        self.deadlines = Deadlines(settings.REQUEST_TIMEOUT_SECONDS)
        self.route_template = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming_id, content_length, credentials, origin = _scan(scope["headers"])
        request_id = _request_id(incoming_id)
        path: str = scope["path"]
        # API answers are per caller: never let a browser or proxy cache them.
        no_store = credentials or path.startswith(self.private_prefix)
        extra = self.headers[csp_for(path), no_store, origin]
        exchange = Exchange(
            receive,
            send,
            extra,
            request_id,
            max_body_bytes=self.max_body_bytes,
            deadlines=self.deadlines,
        )
        series = metrics.request_started(scope["method"])
        request_token = request_id_var.set(request_id)
        user_token = user_id_var.set(None)
        try:
            try:
                refused = declared_length_error(content_length, self.max_body_bytes)
                if refused is not None:  # answered before a byte of the body is read
                    await self._error(scope, receive, exchange.send, *refused, origin=origin)
                    return
                app = self.cors if origin else self.app
                await app(scope, exchange.receive, exchange.send)
            finally:
                exchange.close()
        except asyncio.CancelledError:
            if not exchange.deadline_caused():
                raise  # the server's cancellation (client gone, shutdown), not ours
            logger.warning("request_deadline_exceeded", timeout_seconds=self.deadlines.timeout)
            if exchange.status:  # the response has begun: only the server can end it now
                raise TimeoutError("request deadline exceeded") from None
            await self._error(scope, receive, exchange.send, *DEADLINE_EXCEEDED, origin=origin)
        except Exception as exc:
            answer = _classify(exc)
            if exchange.status:
                raise
            await self._error(scope, receive, exchange.send, *answer, origin=origin)
        finally:
            seconds = perf_counter() - exchange.start
            route = self.route_template(scope)
            status = exchange.status
            metrics.request_finished(series, route, status or metrics.CLIENT_CLOSED, seconds)
            access_log.write(
                method=scope["method"],
                route=route,
                # The template, never the concrete path (which may carry ids or tokens); the
                # path only when no route matched, for finding what clients get wrong.
                path=None if route else scope["path"][:_MAX_LOGGED_PATH],
                status=status or None,
                seconds=seconds,
                client_ip=client_ip(scope, self.trusted_proxies),
                request_id=request_id,
            )
            user_id_var.reset(user_token)
            request_id_var.reset(request_token)

    async def _error(
        self, scope: Scope, receive: Receive, send: Send, status: int, message: str, *, origin: bool
    ) -> None:
        """Answer with the envelope, with CORS headers when the request came from a browser."""
        if origin:
            send = partial(self.cors.send, send=send, request_headers=Headers(scope=scope))
        await error_response(status, message)(scope, receive, send)
