"""Gunicorn machinery that gunicorn.conf.py wires in: the worker class, sizing, logs, metrics dir.

Nothing here imports prometheus-client: the master must not load it before
`PROMETHEUS_MULTIPROC_DIR` is set, or forked workers would inherit single-process values.
"""

import math
import os
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from gunicorn.arbiter import Arbiter
from uvicorn.config import Config
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from app.config import Settings

CGROUP_V2_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
# Time left, after Uvicorn stops waiting for stuck requests, for the lifespan shutdown to run
# before Gunicorn's graceful_timeout expires and the master kills the worker.
SHUTDOWN_MARGIN_SECONDS = 2


def mark_draining(app: object) -> None:
    """Make `/health/ready` answer 503 from now on (it reads `app.state.draining`)."""
    state = getattr(app, "state", None)
    if state is not None:
        state.draining = True


class DrainingServer(Server):
    """A Uvicorn server that marks the app draining the moment SIGTERM (or SIGINT) lands.

    Uvicorn itself only tells the app at lifespan shutdown, after every in-flight request
    has finished: far too late for a readiness probe.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        mark_draining(self.config.app)
        super().handle_exit(sig, frame)


class KeelWorker(UvicornWorker):  # type: ignore[misc]  # uvicorn-worker ships no type hints
    """`uvicorn_worker.UvicornWorker` without a `Server` header or access log, that drains."""

    CONFIG_KWARGS: dict[str, Any] = {  # noqa: RUF012  # the parent's class-level hook
        **UvicornWorker.CONFIG_KWARGS,
        "server_header": False,
        "access_log": False,  # the app writes one access line per request itself
        "proxy_headers": False,  # the app applies TRUSTED_PROXIES itself (app/core/middleware.py)
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # uvicorn-worker leaves Uvicorn waiting forever; Gunicorn would then SIGKILL the worker
        # at graceful_timeout, skipping the lifespan shutdown (pools closed, logs flushed).
        config: Config = self.config
        graceful = int(self.cfg.graceful_timeout)
        config.timeout_graceful_shutdown = max(graceful - SHUTDOWN_MARGIN_SECONDS, 1)

    async def _serve(self) -> None:
        # UvicornWorker._serve with DrainingServer in place of Server.
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

    `os.cpu_count()` reports the host's CPUs, so a container limited to 2 CPUs on a 64-core
    node would start 64 workers (and 64 database pools).
    """
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(count, 1)


def cgroup_cpu_quota() -> float | None:
    """The container's CPU limit in CPUs (cgroup v2, then v1), or None when unlimited."""
    try:
        quota, period = CGROUP_V2_CPU_MAX.read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int(CGROUP_V1_QUOTA.read_text())
        period_us = int(CGROUP_V1_PERIOD.read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def prepare_metrics_dir() -> tuple[Path, bool]:
    """Point `PROMETHEUS_MULTIPROC_DIR` at an empty directory; True when this call created it.

    Files left by a previous run would be summed into this run's counters, so they go.
    """
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not configured:
        path = Path(tempfile.mkdtemp(prefix="keel-metrics-"))
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
        return path, True
    path = Path(configured)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    return path, False


def log_config(settings: Settings) -> dict[str, Any]:
    """`logconfig_dict` putting Gunicorn's own lines (master and workers) in JSON, or {}.

    The app's lifespan reconfigures logging in each worker once it starts; this covers the
    master and each worker's boot. Console format keeps Gunicorn's readable default.
    """
    if settings.log_format != "json":
        return {}
    pre_chain: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = {
        "()": structlog.stdlib.ProcessorFormatter,
        "foreign_pre_chain": pre_chain,
        "processors": [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    }
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        "handlers": {"json": handler},
        "root": {"level": settings.LOG_LEVEL, "handlers": ["json"]},
        "loggers": {
            # UvicornWorker copies gunicorn.error's handlers onto uvicorn.error: both get JSON.
            "gunicorn.error": {
                "level": settings.LOG_LEVEL,
                "handlers": ["json"],
                "propagate": False,
            },
            "gunicorn.access": {"handlers": [], "propagate": False},  # the app logs requests
        },
    }
