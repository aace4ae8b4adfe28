"""The AppException tree services raise, and the handlers that render every error envelope."""

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from http import HTTPStatus
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from app.core.context import request_id_var

logger = structlog.get_logger("app.errors")

ERROR_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}
BEARER_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class AppException(Exception):
    """Base of every error a service may raise; rendered as the envelope by one handler."""

    status_code: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal server error"
    error: ClassVar[str | None] = None  # the envelope's `error`; None: the status's usual one

    def __init__(
        self,
        message: str | None = None,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(self.message)


class BadRequestError(AppException):
    status_code = 400
    default_message = "Bad request"


class UnauthorizedError(AppException):
    status_code = 401
    default_message = "Could not validate credentials"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers=BEARER_CHALLENGE)


class ForbiddenError(AppException):
    status_code = 403
    default_message = "Not enough privileges"


class NotFoundError(AppException):
    status_code = 404
    default_message = "Resource not found"


class ConflictError(AppException):
    status_code = 409
    default_message = "Resource already exists"


class PreconditionFailedError(AppException):
    status_code = 412
    default_message = "The resource has changed since the version given in If-Match"


class IdempotencyKeyReusedError(AppException):
    status_code = 422
    error = "idempotency_key_reused"
    default_message = "This Idempotency-Key was already used with a different request"


class ServiceUnavailableError(AppException):
    status_code = 503
    default_message = "Service temporarily unavailable"


def error_body(
    status: int, message: str, details: Any = None, error: str | None = None
) -> dict[str, Any]:
    """The envelope of CONTRACT.md section 4."""
    return {
        "error": error
        or ERROR_CODES.get(status)
        or HTTPStatus(status).phrase.lower().replace(" ", "_"),
        "message": message,
        "details": details,
        "request_id": request_id_var.get(),
    }


def error_response(
    status: int,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
    error: str | None = None,
) -> JSONResponse:
    body = error_body(status, message, details, error)
    return JSONResponse(body, status_code=status, headers=headers)


@lru_cache(maxsize=256)
def _path_regex(path: str) -> re.Pattern[str]:
    return compile_path(path)[0]


def _allowed_methods(request: Request) -> list[str]:
    """Every method the path supports, across all the routes that share it.

    Starlette's own 405 lists only the methods of the first route that matched the path.
    """
    path = request.url.path
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.routes):
        if route.path and route.methods and _path_regex(route.path).match(path):
            methods |= route.methods
    return sorted(methods)


def _field(loc: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in loc)


def _expects_form(route: APIRoute) -> bool:
    return any(
        getattr(param.field_info, "media_type", "").startswith(("application/x-www", "multipart"))
        for param in route.dependant.body_params
    )


def _unsupported_media_type(request: Request) -> str | None:
    """The media type a body was sent with when the route cannot read it, else None."""
    route = request.scope.get("route")
    content_type = request.headers.get("content-type", "")
    if not isinstance(route, APIRoute) or not route.body_field or not content_type:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    if _expects_form(route):
        accepted: Iterable[str] = ("application/x-www-form-urlencoded", "multipart/form-data")
        return None if media in accepted else media
    is_json = media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )
    return None if is_json else media


async def app_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppException)
    return error_response(exc.status_code, exc.message, exc.details, exc.headers, exc.error)


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    headers = dict(exc.headers or {})
    if status == 404:
        message = "Resource not found"
    elif status == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
        message = f"Method {request.method} not allowed"
    else:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return error_response(status, message, None, headers)


async def validation_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    media = _unsupported_media_type(request)
    if media is not None:
        return error_response(415, f"Unsupported media type '{media}'")
    details = [
        {"field": _field(err["loc"]), "message": err["msg"], "type": err["type"]}
        for err in exc.errors()
    ]
    return error_response(422, "Request validation failed", details)


async def integrity_error_handler(request: Request, exc: Exception) -> JSONResponse:
    # A unique or foreign-key race lost at commit time: the client's request conflicts.
    logger.info("integrity_error", error=type(exc).__name__)
    return error_response(409, "The request conflicts with the current state of the resource")


# SQLSTATE classes that mean "try again later": connection exception, insufficient resources,
# operator intervention (statement timeout, shutdown), transaction rollback (deadlock).
OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "40"})


def is_database_outage(exc: Exception) -> bool:
    """An unreachable, overloaded or timed-out database, as opposed to a statement it refused."""
    if not isinstance(exc, DBAPIError):
        return True  # the pool's timeout, or a connection error below the driver
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)  # PostgreSQL's error code, via asyncpg
    return isinstance(sqlstate, str) and sqlstate[:2] in OUTAGE_SQLSTATE_CLASSES


async def database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After for an outage; a refused value or bad statement is a bug: 500."""
    if not is_database_outage(exc):
        return await unhandled_exception_handler(request, exc)
    logger.warning("database_unavailable", error=type(exc).__name__)
    return error_response(
        503, "Database unavailable, try again shortly", None, {"Retry-After": "5"}
    )


async def unhandled_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled_exception", exc_info=exc)
    return error_response(500, "Internal server error")


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppException, app_exception_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(RequestValidationError, validation_exception_handler)
    app.add_exception_handler(IntegrityError, integrity_error_handler)
    for db_error in (DBAPIError, PoolTimeoutError, ConnectionError):
        app.add_exception_handler(db_error, database_error_handler)
    app.add_exception_handler(Exception, unhandled_exception_handler)
