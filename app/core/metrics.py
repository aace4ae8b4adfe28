"""Prometheus metrics, merged across Gunicorn workers by prometheus-client's multiprocess mode
when `PROMETHEUS_MULTIPROC_DIR` is set (gunicorn.conf.py sets it before the workers fork)."""

import asyncio
import contextlib
import os
from functools import cache
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.build import version

UNMATCHED_ROUTE = "<unmatched>"  # one label for every unknown path: raw paths explode cardinality
OTHER_METHOD = "OTHER"  # clients may send any token as a method; labels stay bounded
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CLIENT_CLOSED = 499  # nginx's convention: the client (or the server) left before an answer

REQUESTS = Counter("http_requests_total", "HTTP requests answered.", ["method", "route", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its response.",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
)
IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "HTTP requests being handled right now.",
    ["method"],
    multiprocess_mode="livesum",
)
RATE_LIMITED = Counter(
    "rate_limited_requests_total", "Requests refused with 429, by limit.", ["scope"]
)
REFUSED = Counter(
    "http_requests_refused_total",
    "Requests refused with 503 by admission control: the queue was full or its deadline passed.",
    ["reason"],
)
REDIS_FALLBACKS = Counter(
    "rate_limit_redis_fallbacks_total",
    "Times the rate limiter found Redis failing and counted in-process for a while instead.",
)
REFUSAL_REASONS = ("queue_full", "queue_timeout")
for _reason in REFUSAL_REASONS:  # at 0 from the start: alerts see the series before a refusal
    REFUSED.labels(reason=_reason)
DB_POOL_IN_USE = Gauge(
    "db_pool_connections_in_use",
    "Database connections checked out of the pool.",
    multiprocess_mode="livesum",
)
DB_POOL_SIZE = Gauge(
    "db_pool_size",
    "Connections each pool keeps (before overflow), summed over the workers.",
    multiprocess_mode="livesum",
)

BUILD_INFO = Gauge(
    "keel_build_info",
    "Always 1; the running build's version in its label.",
    ["version"],
    multiprocess_mode="max",
)
BUILD_INFO.labels(version=version()).set(1)

# prometheus-client's process collector reads /proc/self: in multiprocess mode the scrape would
# describe only the worker that answered it. Each worker copies its own figures into these
# (a `pid` label each, live workers only) every PROCESS_METRICS_SECONDS; they are registered
# nowhere, so single-process mode keeps the default collector alone (no duplicates).
PROCESS_METRICS_SECONDS: Final = 10.0
PROCESS_GAUGES = {
    name: Gauge(name, help_text, multiprocess_mode="liveall", registry=None)
    for name, help_text in (
        ("process_cpu_seconds_total", "CPU time of the worker, user and system, in seconds."),
        ("process_resident_memory_bytes", "Resident memory of the worker, in bytes."),
        ("process_open_fds", "Open file descriptors of the worker."),
        ("process_start_time_seconds", "Start time of the worker, in seconds since the epoch."),
    )
}


def record_rate_limited(scope_name: str) -> None:
    """Count one 429; the rate limiter calls it with its limit's name (`default`, `auth`...)."""
    RATE_LIMITED.labels(scope=scope_name).inc()


def record_refused(reason: str) -> None:
    """Count one request refused by admission control (`queue_full` or `queue_timeout`)."""
    REFUSED.labels(reason=reason).inc()


def instrument_pool(engine: AsyncEngine) -> None:
    """Track the engine's pool: checkouts and checkins always come in pairs, per process."""
    pool = engine.sync_engine.pool
    size = getattr(pool, "size", None)
    if callable(size):
        DB_POOL_SIZE.inc(size())
    event.listen(pool, "checkout", lambda *_: DB_POOL_IN_USE.inc())
    event.listen(pool, "checkin", lambda *_: DB_POOL_IN_USE.dec())


def release_pool(engine: AsyncEngine) -> None:
    """Undo `instrument_pool`'s size once the engine is disposed."""
    size = getattr(engine.sync_engine.pool, "size", None)
    if callable(size):
        DB_POOL_SIZE.dec(size())


def copy_process_metrics(collector: ProcessCollector) -> None:
    """This process's figures, as the default collector reads them, into PROCESS_GAUGES."""
    for family in collector.collect():
        for sample in family.samples:
            gauge = PROCESS_GAUGES.get(sample.name)
            if gauge is not None:
                gauge.set(sample.value)


def start_process_metrics() -> "asyncio.Task[None] | None":
    """In multiprocess mode, keep this worker's process figures up to date; else None."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None  # the default registry's own process collector answers the scrape
    collector = ProcessCollector(registry=None)

    async def refresh() -> None:
        while True:
            copy_process_metrics(collector)
            await asyncio.sleep(PROCESS_METRICS_SECONDS)

    return asyncio.get_running_loop().create_task(refresh())


async def stop_process_metrics(task: "asyncio.Task[None] | None") -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def render() -> tuple[bytes, str]:
    """The text exposition of every metric, merged across workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A fresh registry per scrape: MultiProcessCollector reads the files as they are now.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


# Label children looked up once per label set (`labels()` validates and locks on every call).
@cache
def in_progress(method: str) -> Gauge:
    """The in-flight gauge of a method label."""
    return IN_PROGRESS.labels(method)


@cache
def _answered(method: str, route: str | None, status: int) -> tuple[Counter, Histogram]:
    labels = (method, route or UNMATCHED_ROUTE, str(status))
    return REQUESTS.labels(*labels), LATENCY.labels(*labels)


def record_request(method: str, route: str | None, status: int, seconds: float) -> None:
    """Count and time one answered request, by method, route template and status."""
    requests, latency = _answered(method, route, status)
    requests.inc()
    latency.observe(seconds)
