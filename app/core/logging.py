"""structlog configuration: JSON lines in production, readable console lines in development."""

import logging
import sys
from typing import Any

import orjson
import structlog

from app.config import Settings
from app.core.context import request_id_var, user_id_var


def _add_request_context(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    user_id = user_id_var.get()
    if user_id is not None:
        event.setdefault("user_id", user_id)
    return event


def configure_logging(settings: Settings) -> None:
    """Route structlog and the stdlib loggers (uvicorn, gunicorn) through one renderer."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_request_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if settings.log_format == "json":
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    else:
        renderer = structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.LOG_LEVEL)
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error", "gunicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    # The app writes its own access line; uvicorn's would be a second, poorer one.
    logging.getLogger("uvicorn.access").handlers.clear()
    logging.getLogger("uvicorn.access").propagate = False


def _dumps(value: Any, **_kwargs: Any) -> str:
    return orjson.dumps(value, default=str).decode()
