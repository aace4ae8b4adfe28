"""Gunicorn settings: `gunicorn -c gunicorn.conf.py app.main:app` is the production server.

Everything comes from Keel's own settings (`WORKERS`, `BIND`, `TRUSTED_PROXIES`, `LOG_LEVEL`,
`LOG_FORMAT`, `.env`), validated here in the master so a bad value stops start-up with one line
before any worker forks. Any Gunicorn setting can still be overridden at deploy time with
`GUNICORN_CMD_ARGS`, e.g. `GUNICORN_CMD_ARGS="--graceful-timeout 20"`.
"""

import os
import shutil
from pathlib import Path
from typing import Any

from app import server as keel_server
from app.config import load_settings

settings = load_settings()
if settings.secret_key_generated:
    # Development without SECRET_KEY: one generated key for every worker, or a token issued by
    # one worker would be refused by the next.
    os.environ["SECRET_KEY"] = settings.secret_key

wsgi_app = "app.main:app"
worker_class = "app.server.KeelWorker"  # uvicorn_worker.UvicornWorker, no Server header
bind = [settings.BIND]
# One worker per CPU the container may use (affinity mask and cgroup quota), not `2 * CPUs + 1`:
# that rule is for sync workers blocked on I/O, while each async worker already keeps its CPU
# busy, and every extra worker holds its own database pool (DATABASE_POOL_SIZE + MAX_OVERFLOW).
workers = settings.WORKERS or keel_server.available_cpus()
# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads connections
# evenly over them. With one shared socket, whichever worker is idle takes every connection
# waiting, so a client opening 64 at once could leave all 64 on one worker: admission control is
# per worker, so that one queues and refuses while the other has room (tests/ops/test_gunicorn).
# The cost: connections the kernel accepted for a worker that exits before taking them are
# reset, and a second server started on the same address by the same user shares it instead of
# failing to start.
reuse_port = not settings.BIND.startswith(("unix:", "fd://"))

# SIGTERM: stop accepting, let in-flight requests finish for up to graceful_timeout, exit 0.
# Kubernetes' terminationGracePeriodSeconds must exceed preStop sleep + this (deploy/k8s).
graceful_timeout = 30
# Heartbeat, not a request deadline (that is REQUEST_TIMEOUT_SECONDS): a worker whose event loop
# stays blocked this long is killed and replaced.
timeout = 30
# Longer than a load balancer's idle timeout (60 s on nginx and AWS ALB), so the proxy, never
# the app, closes an idle connection and no request races a closing socket.
keepalive = 75
# Recycle each worker after 1.0-1.2M requests (jitter: not all at once) to bound a slow leak.
# Rarely: a recycled worker closes its keep-alive connections, and the memory benchmark
# (docs/benchmarks.md) shows no growth to bound.
max_requests = 1_000_000
max_requests_jitter = 200_000
# The heartbeat file is fchmod-ed constantly: keep it in memory, off disk-backed /tmp.
worker_tmp_dir = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108
proc_name = "keel"
# No `gunicornc` control socket: it lives under $HOME (read-only in the container) and two
# instances on one host would fight over the same path. Signals are the control interface.
control_socket_disable = True

accesslog = None  # the app writes one structured access line per request
errorlog = "-"
loglevel = settings.LOG_LEVEL.lower()
logconfig_dict = keel_server.log_config(settings)


def on_starting(server: Any) -> None:
    """Give the workers an empty prometheus-client multiprocess directory before they fork."""
    path, created = keel_server.prepare_metrics_dir()
    server.keel_metrics_dir = path if created else None
    server.log.info("prometheus multiprocess directory: %s", path)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges (in-flight requests, pool use) from the sums."""
    # Imported here, never at the top: see app/server.py on the master and prometheus-client.
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    created: Path | None = getattr(server, "keel_metrics_dir", None)
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
