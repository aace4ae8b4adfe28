"""Rate limits: fixed windows counted in `limits`' storage, Redis when configured, memory otherwise.

Each hit is one atomic increment (`Storage.incr`: one Lua script on Redis) of the counter of the
current window; the count it returns is all the answer needs (remaining = limit - count, reset =
the window's end), so a request costs one Redis round trip. `limits`' own strategies need two
(`hit`, then `get_window_stats`), and the two are not atomic together. Windows are aligned on the
clock (`time // window`), so every worker and replica counts into the same key.

With `REDIS_URL` every worker and replica shares one counter per key. When Redis fails, each
process falls back to its own in-memory counters with the same quotas (so the auth endpoints keep
their strict cap), logs it at most once per interval, never answers 500, and tries Redis again
after a short pause.
"""

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Final

import structlog
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.config import Settings

logger = structlog.get_logger("app.rate_limit")

KEY_PREFIX: Final = "keel:rl"
# Redis answers in well under a millisecond; waiting longer only delays the fallback.
REDIS_TIMEOUT_SECONDS: Final = 0.5
REDIS_MAX_CONNECTIONS: Final = 64
# After a Redis failure, the memory counters serve for this long before Redis is tried again.
REDIS_RETRY_AFTER_SECONDS: Final = 5.0
OUTAGE_LOG_INTERVAL_SECONDS: Final = 60.0


@dataclass(frozen=True, slots=True)
class Policy:
    """A named quota; the name is the one the IETF `RateLimit-Policy` header shows."""

    name: str
    item: RateLimitItem

    @classmethod
    def per_window(cls, name: str, requests: int, window_seconds: int) -> "Policy":
        return cls(name, RateLimitItemPerSecond(requests, window_seconds, namespace=name))

    @property
    def limit(self) -> int:
        return self.item.amount

    @property
    def window_seconds(self) -> int:
        return self.item.get_expiry()


@dataclass(frozen=True, slots=True)
class Decision:
    policy: Policy
    allowed: bool
    remaining: int
    reset_seconds: int  # until the quota has room again (allowed) or the request may retry

    def headers(self) -> dict[str, str]:
        """X-RateLimit-* plus the IETF draft's `RateLimit-Policy` / `RateLimit` fields."""
        name, limit = self.policy.name, self.policy.limit
        headers = {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "RateLimit-Policy": f'"{name}";q={limit};w={self.policy.window_seconds}',
            "RateLimit": f'"{name}";r={self.remaining};t={self.reset_seconds}',
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers


class RateLimiter:
    """Counts hits per (policy, key); open it in the lifespan, after the worker has forked."""

    def __init__(self, settings: Settings) -> None:
        self.default = Policy.per_window(
            "default", settings.RATE_LIMIT_REQUESTS, settings.RATE_LIMIT_WINDOW_SECONDS
        )
        self.auth = Policy.per_window(
            "auth", settings.AUTH_RATE_LIMIT_REQUESTS, settings.AUTH_RATE_LIMIT_WINDOW_SECONDS
        )
        self._redis_url = settings.REDIS_URL
        self._memory = MemoryStorage()
        self._redis: Redis | None = None
        self._shared: RedisStorage | None = None
        self._redis_down_until = 0.0
        self._outage_logged_at = -math.inf

    @property
    def backend(self) -> str:
        return "redis" if self._shared is not None else "memory"

    async def open(self) -> None:
        """Create the Redis client (no connection is made until the first hit)."""
        if not self._redis_url:
            return
        pool = BlockingConnectionPool.from_url(
            self._redis_url,
            max_connections=REDIS_MAX_CONNECTIONS,
            timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),  # fail fast: the fallback is the retry
        )
        self._redis = Redis(connection_pool=pool)
        self._shared = RedisStorage(
            f"async+{self._redis_url}",
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            connection_pool=pool,  # type: ignore[arg-type]  # typed narrower than accepted
        )

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            await self._redis.connection_pool.aclose()
            self._redis = None
            self._shared = None
        timer = self._memory.timer
        if timer is not None and not timer.done():
            timer.cancel()

    async def ping(self, within_seconds: float) -> float:
        """Redis round-trip time in milliseconds (for /health); raises when Redis is down."""
        if self._redis is None:
            raise RuntimeError("Redis is not configured")
        async with asyncio.timeout(within_seconds):
            start = time.perf_counter()
            await self._redis.ping()  # type: ignore[misc]  # redis-py types sync and async as one
            return (time.perf_counter() - start) * 1000

    async def hit(self, policy: Policy, *key: str) -> Decision:
        """Count one request against `policy` for `key`, and say whether it may proceed."""
        shared = self._shared
        if shared is not None and time.monotonic() >= self._redis_down_until:
            try:
                decision = await self._hit(shared, policy, key)
            except Exception as exc:  # StorageError, a timeout, a full pool: all mean "down"
                self._redis_failed(exc)
            else:
                self._redis_ok()
                return decision
        return await self._hit(self._memory, policy, key)

    @staticmethod
    async def _hit(storage: Storage, policy: Policy, key: tuple[str, ...]) -> Decision:
        """One atomic increment of this window's counter; refused hits count too."""
        window = policy.window_seconds
        now = time.time()
        number = int(now // window)
        count = await storage.incr(policy.item.key_for(*key, number), window)
        reset = max(1, math.ceil((number + 1) * window - now))
        return Decision(policy, count <= policy.limit, max(0, policy.limit - count), reset)

    def _redis_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self._redis_down_until = now + REDIS_RETRY_AFTER_SECONDS
        if now - self._outage_logged_at >= OUTAGE_LOG_INTERVAL_SECONDS:
            self._outage_logged_at = now
            logger.warning(
                "rate_limit_redis_unavailable",
                error=type(exc).__name__,
                fallback="in-process limits",
                retry_after_seconds=REDIS_RETRY_AFTER_SECONDS,
            )

    def _redis_ok(self) -> None:
        if self._outage_logged_at != -math.inf:
            self._outage_logged_at = -math.inf
            logger.info("rate_limit_redis_recovered")
