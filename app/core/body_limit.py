"""Request-body limits: by the declared Content-Length, and by counting what actually arrives."""

from starlette.exceptions import HTTPException


class PayloadTooLargeError(HTTPException):
    """Raised from `receive` once a body passes the limit.

    An HTTPException, so that FastAPI's body parsing re-raises it untouched (any other error there
    becomes a 400) and the app's handler renders the 413 envelope; raised outside the app (e.g.
    while the rate limiter reads a login form) the edge middleware renders it.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body exceeds {limit} bytes")


def declared_length_error(content_length: bytes | None, limit: int) -> tuple[int, str] | None:
    """(status, message) when a declared Content-Length is invalid or over `limit`, else None."""
    if content_length is None:
        return None
    if not content_length.isdigit():
        return 400, "Invalid Content-Length header"
    if int(content_length) > limit:
        return 413, PayloadTooLargeError(limit).detail
    return None
