"""What gunicorn.conf.py wires in: the worker class, the worker count, logs, the metrics dir.

Nothing here imports prometheus-client: loaded in the master before `PROMETHEUS_MULTIPROC_DIR`
is set, it would hand the forked workers single-process metrics.
"""

import asyncio
import math
import os
import signal
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
# Left for the lifespan shutdown between Uvicorn giving up on stuck requests and Gunicorn's kill.
SHUTDOWN_MARGIN_SECONDS = 2


class DrainingServer(Server):
    """A Uvicorn server that makes `/health/ready` answer 503 as soon as SIGTERM lands.

    Uvicorn itself tells the app only at lifespan shutdown, after the last in-flight request.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        state = getattr(self.config.app, "state", None)
        if state is not None:
            state.draining = True
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
        # Uvicorn would wait for stuck requests until Gunicorn's kill skips the lifespan shutdown.
        config: Config = self.config
        graceful = int(self.cfg.graceful_timeout)
        config.timeout_graceful_shutdown = max(graceful - SHUTDOWN_MARGIN_SECONDS, 1)

    def run(self) -> None:
        with asyncio.Runner(loop_factory=self.config.get_loop_factory()) as runner:
            runner.run(self.serve())

    async def serve(self) -> None:
        """UvicornWorker's own serving, with a DrainingServer."""
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGQUIT, self.handle_exit, signal.SIGQUIT, None)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup quota (not the host's)."""
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

    A previous run's files would be summed into this run's counters.
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
    """`logconfig_dict` for Gunicorn's own lines in JSON (until each worker's lifespan), or {}."""
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
