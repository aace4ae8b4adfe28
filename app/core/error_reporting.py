"""Sentry, opt-in with SENTRY_DSN (CONTRACT.md section 12): every 500 and every job that fails
for good, tagged with its request id and trace id; nothing about the caller.

Initialised without Sentry's framework integrations: they wrap every middleware and parse
request bodies on every request, tracing or not. Keel reports from its own 500 path
(app/core/exceptions.py) and its job failure path (app/jobs/runner.py), so unset it costs
nothing, and set it costs nothing until something fails.
"""

from typing import Any, Final

import sentry_sdk
import structlog
from opentelemetry import trace

from app.config import Settings
from app.core.build import version

FLUSH_SECONDS: Final = 2.0
# Exceptions from these modules quote the values they refused (an address, a token hash).
DATABASE_MODULES: Final = ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite")
REMOVED: Final = "[removed: a database error may quote the values it refused]"


def init(settings: Settings) -> None:
    """Report to SENTRY_DSN from now on (in the lifespan or the worker: after the fork)."""
    if settings.SENTRY_DSN is None:
        return
    sentry_sdk.init(
        dsn=settings.SENTRY_DSN.get_secret_value(),
        release=version(),
        environment=settings.ENVIRONMENT,
        default_integrations=False,
        auto_enabling_integrations=False,
        send_default_pii=False,
        include_local_variables=False,  # a frame's locals may hold a password or an address
        max_request_body_size="never",
        before_send=strip_personal_data,
    )


def close() -> None:
    """Send what is queued, then stop reporting (a later `init` starts again)."""
    if sentry_sdk.is_initialized():
        sentry_sdk.get_client().close(timeout=FLUSH_SECONDS)


def report(error: BaseException, **tags: str) -> None:
    """Report an error with the current request id and trace id (a no-op without SENTRY_DSN)."""
    if not sentry_sdk.is_initialized():
        return
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id is not None:
        tags["request_id"] = str(request_id)
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        tags["trace_id"] = format(span.trace_id, "032x")
    sentry_sdk.capture_exception(error, tags=tags)


def strip_personal_data(event: Any, _hint: Any) -> Any:
    """`before_send`: no request (body, headers, cookies, query), user, extras or breadcrumbs;
    no local variables in the frames; a database error's message goes (it may quote values)."""
    for key in ("request", "user", "extra", "breadcrumbs", "modules"):
        event.pop(key, None)
    for exception in (event.get("exception") or {}).get("values") or ():
        if str(exception.get("module") or "").startswith(DATABASE_MODULES):
            exception["value"] = REMOVED
        for frame in (exception.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    return event
