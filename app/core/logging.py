"""structlog configuration: one JSON object per line in production, readable lines in development.

The stdlib's loggers (Uvicorn, Gunicorn, libraries) go through structlog's ProcessorFormatter
with the same processors and renderer: every line on stderr has one shape.
"""

import logging
import os
import sys
from functools import lru_cache
from typing import Any, Final

import orjson
import structlog
from opentelemetry import trace
from structlog.typing import EventDict, Processor, WrappedLogger

from app.config import Settings

REDACTED: Final = "[REDACTED]"
# A key containing one of these never has its value written, whoever logs it.
SENSITIVE_KEY_PARTS: Final = ("password", "token", "secret", "authorization", "cookie", "api_key")
# Descriptor 2 itself: cached loggers keep their file, and test captures swap `sys.stderr`.
STDERR: Final = sys.__stderr__ or sys.stderr


PROCESSORS: list[Processor] = []  # structlog's chain, see configure_logging


class StderrLogger(structlog.WriteLogger):
    """structlog's WriteLogger on stderr, keeping its name for the `logger` field."""

    def __init__(self, name: str = "") -> None:
        super().__init__(STDERR)
        self.name = name


@lru_cache(maxsize=1024)
def _is_sensitive(key: str) -> bool:
    return any(part in key.lower() for part in SENSITIVE_KEY_PARTS)


def redact_secrets(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Replace the value of any key that names a secret (password, token, cookie...)."""
    for key in event:
        if _is_sensitive(key):
            event[key] = REDACTED
    return event


def _drop_color_message(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    return event


def add_trace_ids(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """The current span's ids, hex as exported, so a line leads to its trace (tracing on only)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def _orjson_dumps(value: Any, **_kwargs: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def configure_logging(settings: Settings) -> None:
    """Configure structlog and route the stdlib's loggers through it (in the lifespan: after a
    Gunicorn worker has installed its own handlers)."""
    level = logging.getLevelNamesMapping()[settings.LOG_LEVEL]
    pid = os.getpid()  # this runs in every worker, after the fork

    def add_pid(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        event["pid"] = pid  # which worker wrote the line
        return event

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,  # request_id and user_id, bound per request
        *([add_trace_ids] if settings.tracing_enabled else []),  # off: not even a lookup
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        add_pid,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Processor
    if settings.log_format == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=STDERR.isatty())
    # Changed in place: loggers cached on first use hold this list, so a second configuration
    # in one process (tracing on for one app, off for the next, as in the tests) reaches them.
    PROCESSORS[:] = [*shared, renderer]
    structlog.configure(
        processors=PROCESSORS,
        logger_factory=StderrLogger,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler(STDERR)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), _drop_color_message, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "gunicorn", "gunicorn.error", "gunicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    # httpx logs every outgoing URL at INFO, query string (and any token in it) included.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    # Keel writes its own access line (route, duration, ids); uvicorn's would be a second one.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
