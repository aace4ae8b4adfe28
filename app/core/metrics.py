"""Prometheus metrics, correct under several Gunicorn workers (prometheus-client multiprocess mode).

With `PROMETHEUS_MULTIPROC_DIR` set (gunicorn.conf.py sets it before the workers start), every
process writes its samples to files there and a scrape merges them; without it, the process's
default registry is served.
"""

import os
from bisect import bisect_left

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

UNMATCHED_ROUTE = "<unmatched>"  # one label for every unknown path: raw paths explode cardinality
OTHER_METHOD = "OTHER"  # clients may send any token as a method; labels stay bounded
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Buckets for an API whose requests mostly take milliseconds, with a tail up to the deadline.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# Status 499 (nginx's convention): the client went away, or the server shut down, before an answer.
CLIENT_CLOSED = 499

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


def record_rate_limited(scope_name: str) -> None:
    """Count one 429; the rate limiter calls it with its limit's name (`default`, `auth`...)."""
    RATE_LIMITED.labels(scope=scope_name).inc()


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


def render() -> tuple[bytes, str]:
    """The text exposition of every metric, merged across workers in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # A fresh registry per scrape: MultiProcessCollector reads the files as they are now.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class _Answered:
    """One (method, route, status) label set: its request counter and latency histogram.

    Updated through the value cells that prometheus-client's `inc` and `observe` end in (in
    both its single-process and its multiprocess value classes): the public calls re-check the
    child's labels on every call, four Python calls per increment, and this runs on every
    request. `tests/core/test_metrics.py` checks the exposed counts, sums and buckets.
    """

    __slots__ = ("_bounds", "_buckets", "_count", "_sum")

    def __init__(self, counter: Counter, histogram: Histogram) -> None:
        self._count = counter._value
        self._sum = histogram._sum
        self._buckets = histogram._buckets
        self._bounds = histogram._upper_bounds  # ends with +Inf: every value has a bucket

    def record(self, seconds: float) -> None:
        self._count.inc(1)
        self._sum.inc(seconds)
        # Bucket i counts the values in (bound i-1, bound i]; the exposition accumulates them.
        self._buckets[bisect_left(self._bounds, seconds)].inc(1)


class MethodSeries:
    """One method label's series: requests in flight, and answered ones by route and status.

    Label lookups validate and lock on every call; the label sets are few (methods x routes x
    statuses), so each child is looked up once per process and kept here.
    """

    __slots__ = ("_answered", "in_progress", "label")

    def __init__(self, label: str) -> None:
        self.label = label
        self.in_progress = IN_PROGRESS.labels(method=label)._value
        self._answered: dict[tuple[str | None, int], _Answered] = {}

    def answered(self, route: str | None, status: int) -> _Answered:
        series = self._answered.get((route, status))
        if series is None:
            labels = {
                "method": self.label,
                "route": route or UNMATCHED_ROUTE,
                "status": str(status),
            }
            series = self._answered[route, status] = _Answered(
                REQUESTS.labels(**labels), LATENCY.labels(**labels)
            )
        return series


_by_method: dict[str, MethodSeries] = {}


def _method_series(method: str) -> MethodSeries:
    label = method if method in KNOWN_METHODS else OTHER_METHOD
    series = _by_method.get(label)
    if series is None:
        series = _by_method[label] = MethodSeries(label)
    return series


def request_started(method: str) -> MethodSeries:
    """Count a request in flight; pass what it returns to `request_finished`."""
    series = _by_method.get(method) or _method_series(method)
    series.in_progress.inc(1)
    return series


def request_finished(series: MethodSeries, route: str | None, status: int, seconds: float) -> None:
    """Count and time an answered request, by method label, route template and status.

    The edge middleware (the outermost layer) calls both, so every answer is counted, its own
    413, 429, 500 and 503 envelopes included.
    """
    series.in_progress.inc(-1)
    series.answered(route, status).record(seconds)
