"""Admission control (CONTRACT.md 7, "Overload"): each worker serves a bounded number of
requests at once; past it a request waits briefly for a slot or is refused at once with 503."""

import asyncio
import math
import random
import time
from typing import Final

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.core import metrics
from app.core.exceptions import error_response

logger = structlog.get_logger("app.admission")

# A request holds a pooled connection only while it talks to the database (not while its token
# is checked, its rate limit counted or its answer serialized): two per connection keep the
# pool busy without queueing for it (README "Overload").
REQUESTS_PER_CONNECTION: Final = 2
# `Retry-After`, 1 or 2 seconds at random: clients refused together (a burst, the connections
# of a restarted client pool) come back spread over two seconds instead of all in the same one.
# It also spares a third of a sustained overload's refusals (930 -> 610 a second in `make bench`).
RETRY_AFTER_SECONDS: Final = ("1", "2")
SMOOTHING: Final = 0.1  # weight of the newest request in the average time a slot is held
LOG_INTERVAL_SECONDS: Final = 1.0
ALWAYS_ADMITTED: Final = frozenset({"/health", "/metrics"})  # and everything under /health/
# Set in a refused request's scope: the access log leaves it out (the throttled line speaks for
# the refusals), its metrics still count it.
REFUSED_SCOPE_KEY: Final = "keel.admission_refused"


def admission_limit(settings: Settings) -> int:
    """`MAX_CONCURRENT_REQUESTS`, or twice what the worker's pool holds."""
    if settings.MAX_CONCURRENT_REQUESTS is not None:
        return settings.MAX_CONCURRENT_REQUESTS
    pool = settings.DATABASE_POOL_SIZE + settings.DATABASE_MAX_OVERFLOW
    return REQUESTS_PER_CONNECTION * pool


class RefusalLog:
    """At most one warning line a second, with the refusals counted since the previous line:
    a flood of refusals never becomes a flood of log lines (the metric counts each one)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.unlogged = 0
        self.logged_at = -math.inf

    def refused(self) -> None:
        self.unlogged += 1
        now = time.monotonic()
        if now - self.logged_at >= LOG_INTERVAL_SECONDS:
            logger.warning("requests_refused", refused=self.unlogged, limit=self.limit)
            self.unlogged = 0
            self.logged_at = now


class AdmissionMiddleware:
    """At most `limit` requests of this worker inside at once; `/health/*` and `/metrics` always.

    A request that finds every slot taken waits, first come first served, up to
    `queue_timeout_ms`. When the requests already waiting could not all be served by then at
    the rate slots free up now (the average time a request holds one, over `limit` slots), it
    would only wait to be refused: it is refused at once. Either way the answer is the 503
    envelope with `Retry-After` (1 or 2 s), before any token, Redis or database work.
    """

    def __init__(self, app: ASGIApp, *, limit: int, queue_timeout_ms: int) -> None:
        self.app = app
        self.limit = limit
        self.slots = asyncio.Semaphore(limit)
        self.queue_timeout = queue_timeout_ms / 1000
        self.waiting = 0
        self.held_seconds = 0.0  # how long an admitted request holds its slot, on average
        self.log = RefusalLog(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.always_admitted(scope["path"]):
            await self.app(scope, receive, send)
            return
        refused = await self.admit()
        if refused is not None:
            scope[REFUSED_SCOPE_KEY] = refused
            metrics.record_refused(refused)
            self.log.refused()
            message = "The service is at capacity; retry shortly"
            retry_after = random.choice(RETRY_AFTER_SECONDS)  # noqa: S311 (jitter, not a secret)
            response = error_response(503, message, None, {"Retry-After": retry_after})
            await response(scope, receive, send)
            return
        started = time.monotonic()
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.release()
            self.observe(time.monotonic() - started)

    def observe(self, held: float) -> None:
        """The average time a slot is held: set by the first request, moved by each later one."""
        if self.held_seconds == 0.0:
            self.held_seconds = held
        else:
            self.held_seconds += SMOOTHING * (held - self.held_seconds)

    @staticmethod
    def always_admitted(path: str) -> bool:
        return path in ALWAYS_ADMITTED or path.startswith("/health/")

    async def admit(self) -> str | None:
        """None once a slot is held; otherwise why the request is refused."""
        if not self.slots.locked():
            await self.slots.acquire()  # a free slot: taken at once, no timer started
            return None
        if (self.waiting + 1) * self.held_seconds / self.limit > self.queue_timeout:
            return "queue_full"  # its turn would come after its deadline
        self.waiting += 1
        deadline = asyncio.timeout(self.queue_timeout)
        try:
            async with deadline:
                await self.slots.acquire()
        except TimeoutError:
            if not deadline.expired():
                raise
            return "queue_timeout"
        finally:
            self.waiting -= 1
        return None
