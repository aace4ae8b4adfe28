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
# An exception's message may quote what it refused (an address, a token hash): it stays in
# Keel's own log line, which the request id and trace id find.
REMOVED: Final = "[removed: see the log line with this request id]"


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
        # Nothing about the caller, whatever an integration would collect (the successor of
        # `send_default_pii=False`); a frame's locals may hold a password or an address.
        data_collection={
            "user_info": False,
            "http_bodies": [],
            "database_query_data": False,
            "stack_frame_variables": False,
        },
        max_request_body_size="never",
        before_send=strip_personal_data,
    )


def close() -> None:
    """Send what is queued, then stop reporting (a later `init` starts again)."""
    if sentry_sdk.is_initialized():
        sentry_sdk.get_client().close(timeout=FLUSH_SECONDS)
        sentry_sdk.get_global_scope().set_client(None)  # back to the SDK's no-op client


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
    no local variables in the frames; no exception messages (types and stacks only)."""
    for key in ("request", "user", "extra", "breadcrumbs", "modules"):
        event.pop(key, None)
    for exception in (event.get("exception") or {}).get("values") or ():
        exception["value"] = REMOVED
        for frame in (exception.get("stacktrace") or {}).get("frames") or ():
            frame.pop("vars", None)
    return event
