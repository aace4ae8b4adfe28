"""The error envelope (CONTRACT.md section 4), the errors services raise, and their handlers."""

import traceback
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core import error_reporting
from app.core.routes import allowed_methods, unsupported_media_type

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


class FieldError(BaseModel):
    field: str = Field(examples=["body.title"])
    message: str = Field(examples=["String should have at most 255 characters"])
    type: str = Field(examples=["string_too_long"])


class ErrorResponse(BaseModel):
    """The one envelope of every non-2xx answer (CONTRACT.md section 4)."""

    error: str = Field(examples=["not_found"])
    message: str = Field(examples=["Resource not found"])
    details: list[FieldError] | dict[str, Any] | None = None
    request_id: str | None = Field(examples=["7f9c2b7e-5d0a-4a43-9d52-8f0a7c1e2b3d"])


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


class RateLimitedError(AppException):
    """A quota is spent; `headers` say which and when to retry (`Retry-After`)."""

    status_code = 429
    default_message = "Too many requests, retry later"


class ServiceUnavailableError(AppException):
    status_code = 503
    default_message = "Service temporarily unavailable"


class PayloadTooLargeError(StarletteHTTPException):
    """An HTTPException: FastAPI's body parsing turns any other error into a 400."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body exceeds {limit} bytes")


def error_envelope(
    status: int, message: str, details: Any = None, error: str | None = None
) -> ErrorResponse:
    """The envelope, with the request id the request-id middleware bound for this request."""
    code = error or ERROR_CODES.get(status) or HTTPStatus(status).phrase.lower().replace(" ", "_")
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return ErrorResponse(error=code, message=message, details=details, request_id=request_id)


def error_response(
    status: int,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
    error: str | None = None,
) -> JSONResponse:
    envelope = error_envelope(status, message, details, error)
    return JSONResponse(envelope.model_dump(mode="json"), status_code=status, headers=headers)


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
        headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
        message = f"Method {request.method} not allowed"
    else:
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    return error_response(status, message, None, headers)


async def validation_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    media = unsupported_media_type(request.scope.get("route"), request.headers)
    if media is not None:
        return error_response(415, f"Unsupported media type '{media}'")
    details = [
        {
            "field": ".".join(str(part) for part in err["loc"]),
            "message": err["msg"],
            "type": err["type"],
        }
        for err in exc.errors()
    ]
    return error_response(422, "Request validation failed", details)


async def integrity_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A unique or foreign-key race lost at commit time: the request conflicts."""
    logger.info("integrity_error", error=type(exc).__name__)
    return error_response(409, "The request conflicts with the current state of the resource")


# SQLSTATE classes of "the data is out of reach for now": connection, insufficient resources,
# operator intervention (timeout, shutdown), rollback (deadlock), credentials (28), database (3D).
OUTAGE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "40", "28", "3D"})


def is_database_outage(exc: Exception) -> bool:
    """An unreachable, overloaded or timed-out database, as opposed to a statement it refused."""
    if not isinstance(exc, DBAPIError):
        return True  # the pool's timeout, or a connection error below the driver
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)  # PostgreSQL's error code, via asyncpg
    return isinstance(sqlstate, str) and sqlstate[:2] in OUTAGE_SQLSTATE_CLASSES


def describe(error: BaseException) -> str:
    """An error for the logs. A database error's text may quote the values it refused (the
    driver's and the server's messages do, whatever `hide_parameters` says): it is named by
    its class, SQLSTATE and statement only."""
    if isinstance(error, DBAPIError):
        sqlstate = getattr(error.orig, "sqlstate", None) or "-"
        return f"{type(error).__name__} (SQLSTATE {sqlstate}) in: {error.statement}"
    return f"{type(error).__name__}: {error}"


async def database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """503 with Retry-After for an outage; a refused value or bad statement is a bug: 500."""
    if not is_database_outage(exc):
        stack = "".join(traceback.format_tb(exc.__traceback__))  # where, without the message
        logger.error("database_error", error=describe(exc), stack=stack)
        error_reporting.report(exc)
        return error_response(500, "Internal server error")
    logger.warning("database_unavailable", error=type(exc).__name__)
    message = "Database unavailable, try again shortly"
    return error_response(503, message, None, {"Retry-After": "5"})


async def unhandled_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled_exception", exc_info=exc)
    error_reporting.report(exc)
    return error_response(500, "Internal server error")


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppException, app_exception_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(RequestValidationError, validation_exception_handler)
    app.add_exception_handler(IntegrityError, integrity_error_handler)
    for db_error in (DBAPIError, PoolTimeoutError, ConnectionError):
        app.add_exception_handler(db_error, database_error_handler)
    # Runs outside every middleware: only what fails after the answer began reaches it.
    app.add_exception_handler(Exception, unhandled_exception_handler)
