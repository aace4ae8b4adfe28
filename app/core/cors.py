"""CORS restricted to `CORS_ORIGINS`, with refused preflights answered by the error envelope."""

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.core.exceptions import error_response

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-Request-ID")
# Headers a browser script may read from a cross-origin answer.
EXPOSED_HEADERS = (
    "X-Request-ID",
    "X-Response-Time",
    "Location",
    "Retry-After",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "RateLimit",
    "RateLimit-Policy",
)
_ENTITY_HEADERS = frozenset({"content-length", "content-type"})


class EnvelopeCORSMiddleware(CORSMiddleware):
    """Starlette's CORSMiddleware, except that a refused preflight is the 400 envelope.

    Starlette answers it in plain text; the CORS headers it computed are kept (a refused origin
    still gets no `Access-Control-Allow-Origin`).
    """

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        origins = settings.CORS_ORIGINS
        super().__init__(
            app,
            allow_origins=origins,
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            # Credentials only with listed origins: browsers refuse `*` with credentials, and
            # echoing any origin with credentials would hand every site the user's session.
            allow_credentials="*" not in origins,
            expose_headers=EXPOSED_HEADERS,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette's says `Vary: Origin` on every answer, CORS request or not: right when some
        # origin is allowed (a cache must not hand a browser an answer without
        # Access-Control-Allow-Origin), needless when none is.
        if self.allow_origins or any(name == b"origin" for name, _ in scope.get("headers", ())):
            await super().__call__(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in _ENTITY_HEADERS
        }
        message = bytes(response.body).decode()  # e.g. "Disallowed CORS origin, method"
        return error_response(400, message, None, headers)
