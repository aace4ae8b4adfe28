"""structlog configuration: one JSON object per line in production, readable lines in development.

structlog's own loggers render straight to stderr (no stdlib round trip: ~5 µs a line instead of
~15 µs). The stdlib loggers (uvicorn, gunicorn, libraries) go through a ProcessorFormatter that
runs the same processors, so every line on stderr has one shape whatever wrote it.
"""

import asyncio
import logging
import os
import sys
import threading
from collections import deque
from datetime import UTC, datetime
from functools import lru_cache
from typing import IO, Any, Final

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from app.config import Settings
from app.core.context import request_id_var, user_id_var

REDACTED: Final = "[REDACTED]"
# A key containing one of these never has its value written, whoever logs it.
SENSITIVE_KEY_PARTS: Final = ("password", "token", "secret", "authorization", "cookie", "api_key")

_stderr_lock = threading.Lock()
_LINE_OPTIONS: Final = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z


class StderrLogger:
    """Writes each rendered line to file descriptor 2 with one `write` call.

    Bound to the descriptor, not to `sys.stderr`: output lands wherever stderr points when the
    line is written (a Gunicorn worker's, a test's capture), even for loggers cached earlier.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name

    def msg(self, message: str | bytes) -> None:
        data = message if isinstance(message, bytes) else message.encode("utf-8", "replace")
        self.write_line(data + b"\n")

    @staticmethod
    def write_line(line: bytes) -> None:
        with _stderr_lock:
            written = os.write(2, line)
            if written < len(line):  # a partial write (a long traceback into a full pipe)
                view = memoryview(line)[written:]
                while view:
                    view = view[os.write(2, view) :]

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _logger_factory(*args: Any) -> StderrLogger:
    return StderrLogger(str(args[0]) if args else "")


def add_request_context(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Bind the current request's id and user id (set by the ASGI middleware) to every line."""
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    user_id = user_id_var.get()
    if user_id is not None:
        event.setdefault("user_id", user_id)
    return event


@lru_cache(maxsize=1024)
def _is_sensitive(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SENSITIVE_KEY_PARTS)


def redact_secrets(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """Replace the value of any key that names a secret (password, token, cookie...)."""
    for key in event:
        if _is_sensitive(key):
            event[key] = REDACTED
    return event


def _add_pid(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event["pid"] = os.getpid()  # which worker wrote it; read per line, so right after a fork
    return event


def _drop_color_message(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured copy of the message
    return event


def _add_logger_name(logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    record = event.get("_record")
    name = record.name if record is not None else getattr(logger, "name", "")
    if name:
        event["logger"] = name
    return event


class StderrHandler(logging.Handler):
    """The stdlib side of the same sink: one `write` to descriptor 2 per formatted record."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            StderrLogger().msg(self.format(record))
        except Exception:
            self.handleError(record)


def _dumps_bytes(value: Any, **_kwargs: Any) -> bytes:
    return orjson.dumps(value, default=str)


def _dumps_str(value: Any, **_kwargs: Any) -> str:
    return orjson.dumps(value, default=str).decode()


def _renderers(settings: Settings) -> tuple[Processor, Processor]:
    """(renderer for structlog's loggers, renderer for stdlib records, which must give str)."""
    if settings.log_format == "json":
        return (
            structlog.processors.JSONRenderer(serializer=_dumps_bytes),
            structlog.processors.JSONRenderer(serializer=_dumps_str),
        )
    console = structlog.dev.ConsoleRenderer(colors=_is_tty(sys.stderr))
    return console, console


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class AccessLog:
    """The access line, the one line every request writes.

    In JSON mode it is rendered here directly (one dict, orjson), with the keys a structlog line
    has: a few µs instead of ~10 µs through the processor chain, on every request. Its fields
    are fixed and hold no secret. The lines of the requests that end in one event-loop iteration
    are written together when it ends: one `write` per batch, not per request, under load. In
    console mode it goes through structlog like any other line, at once.
    """

    def __init__(self) -> None:
        self.enabled = True
        self.json = False
        self._logger = structlog.get_logger("app.access")
        self._pid = os.getpid()
        self._pending: deque[bytes] = deque()  # appends and pops are atomic: no lock needed

    def configure(self, settings: Settings) -> None:
        """Called in each worker's lifespan, so after any fork."""
        self.enabled = logging.getLevelNamesMapping()[settings.LOG_LEVEL] <= logging.INFO
        self.json = settings.log_format == "json"
        self._pid = os.getpid()

    def write(
        self,
        *,
        method: str,
        route: str | None,
        path: str | None,
        status: int | None,
        seconds: float,
        client_ip: str,
        request_id: str,
    ) -> None:
        if not self.enabled:
            return
        duration_ms = int(seconds * 100_000 + 0.5) / 100  # to 0.01 ms; a quarter of round()'s cost
        if not self.json:
            self._logger.info(
                "request",
                method=method,
                route=route,
                path=path,
                status=status,
                duration_ms=duration_ms,
                client_ip=client_ip,
            )
            return
        line = {
            "method": method,
            "route": route,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "client_ip": client_ip,
            "event": "request",
            "request_id": request_id,
            "level": "info",
            "logger": "app.access",
            "pid": self._pid,
            # orjson renders it as structlog's TimeStamper does: 2026-11-24T22:09:50.709161Z
            "timestamp": datetime.now(UTC),
        }
        user_id = user_id_var.get()
        if user_id is not None:
            line["user_id"] = user_id
        pending = self._pending
        pending.append(orjson.dumps(line, option=_LINE_OPTIONS))
        if len(pending) == 1:  # the first line since the last flush
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop here: nothing would flush it later
                self.flush()

    def flush(self) -> None:
        """Write the pending lines with one `write` (the lifespan's end calls it too)."""
        pending = self._pending
        lines = [pending.popleft() for _ in range(len(pending))]
        if lines:
            StderrLogger.write_line(b"".join(lines))


access_log = AccessLog()


def configure_logging(settings: Settings) -> None:
    """Configure structlog and route the stdlib loggers (uvicorn, gunicorn) through it.

    Called in the lifespan: a Gunicorn worker installs its own handlers after forking, and this
    replaces them.
    """
    level = logging.getLevelNamesMapping()[settings.LOG_LEVEL]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        add_request_context,
        structlog.processors.add_log_level,
        _add_logger_name,
        _add_pid,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    if settings.log_format == "json":
        shared.append(structlog.processors.format_exc_info)
    access_log.configure(settings)
    renderer, stdlib_renderer = _renderers(settings)
    structlog.configure(
        processors=[*shared, renderer],
        logger_factory=_logger_factory,
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), _drop_color_message, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, stdlib_renderer],
    )
    handler = StderrHandler()
    handler.setFormatter(formatter)
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
