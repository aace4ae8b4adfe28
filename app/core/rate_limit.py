"""Rate limits (CONTRACT.md section 6): fixed windows aligned on the clock, counted in Redis
(one atomic `incr` shared by every worker and replica) or, without Redis or while it fails, in
the process's memory with the same quotas."""

import asyncio
import hashlib
import math
import time
from collections import deque
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network, ip_address
from typing import Final

import structlog
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.core import metrics
from app.core.exceptions import RateLimitedError, error_response
from app.core.middleware import client_ip
from app.core.security import request_access_claims

logger = structlog.get_logger("app.rate_limit")

KEY_PREFIX: Final = "keel:rl"
REDIS_TIMEOUT_SECONDS: Final = 0.5  # Redis answers in well under a millisecond
REDIS_MAX_CONNECTIONS: Final = 64
REDIS_RETRY_AFTER_SECONDS: Final = 5.0  # the memory counters serve this long after a failure
OUTAGE_LOG_INTERVAL_SECONDS: Final = 60.0
MAX_LOGIN_FORM_FIELDS: Final = 16
EXEMPT_PREFIXES: Final = ("/health/", "/docs/", "/redoc/", "/metrics/")
# The routes under `{API_V1_PREFIX}/auth/` that count against the stricter auth quota.
AUTH_ROUTES: Final = (
    "token",
    "register",
    "password-reset",
    "password-reset/confirm",
    "verify-email",
    "verify-email/resend",
)


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
        self.redis_url = settings.REDIS_URL
        self.memory = MemoryStorage()
        self.pool: BlockingConnectionPool | None = None
        self.shared: RedisStorage | None = None
        self.redis_down_until = 0.0
        self.outage_logged_at = -math.inf

    @property
    def backend(self) -> str:
        return "redis" if self.shared is not None else "memory"

    async def open(self) -> None:
        """Create the Redis client (no connection is made until the first hit)."""
        if not self.redis_url:
            return
        self.pool = BlockingConnectionPool.from_url(
            self.redis_url,
            max_connections=REDIS_MAX_CONNECTIONS,
            timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),  # fail fast: the fallback is the retry
        )
        self.shared = RedisStorage(
            f"async+{self.redis_url}",
            wrap_exceptions=True,
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            connection_pool=self.pool,  # type: ignore[arg-type]  # typed narrower than accepted
        )

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()
            self.pool = self.shared = None
        timer = self.memory.timer
        if timer is not None and not timer.done():
            timer.cancel()

    async def ping(self, within_seconds: float) -> float:
        """Redis round-trip time in milliseconds (for /health); raises when Redis is down."""
        start = time.perf_counter()
        async with asyncio.timeout(within_seconds):
            if self.shared is None or not await self.shared.check():
                raise RuntimeError("Redis is not configured or does not answer")
        return (time.perf_counter() - start) * 1000

    async def hit(self, policy: Policy, *key: str) -> Decision:
        """Count one request against `policy` for `key`, and say whether it may proceed."""
        if self.shared is not None and time.monotonic() >= self.redis_down_until:
            try:
                decision = await self.count(self.shared, policy, key)
            except Exception as exc:  # StorageError, a timeout, a full pool: all mean "down"
                self.redis_failed(exc)
            else:
                if self.outage_logged_at != -math.inf:
                    self.outage_logged_at = -math.inf
                    logger.info("rate_limit_redis_recovered")
                return decision
        return await self.count(self.memory, policy, key)

    @staticmethod
    async def count(storage: Storage, policy: Policy, key: tuple[str, ...]) -> Decision:
        """One atomic increment of this window's counter; refused hits count too."""
        window = policy.window_seconds
        now = time.time()
        number = int(now // window)
        count = await storage.incr(policy.item.key_for(*key, number), window)
        reset = max(1, math.ceil((number + 1) * window - now))
        return Decision(policy, count <= policy.limit, max(0, policy.limit - count), reset)

    def redis_failed(self, exc: Exception) -> None:
        now = time.monotonic()
        self.redis_down_until = now + REDIS_RETRY_AFTER_SECONDS
        metrics.REDIS_FALLBACKS.inc()  # once per retry window: Redis is skipped meanwhile
        if now - self.outage_logged_at >= OUTAGE_LOG_INTERVAL_SECONDS:
            self.outage_logged_at = now
            logger.warning(
                "rate_limit_redis_unavailable",
                error=type(exc).__name__,
                fallback="in-process limits",
                retry_after_seconds=REDIS_RETRY_AFTER_SECONDS,
            )


def ip_key(ip: str) -> str:
    """IPv6 clients are keyed by their /64: one host usually owns the whole prefix."""
    try:
        address = ip_address(ip)
    except ValueError:
        return ip
    if not isinstance(address, IPv6Address):
        return ip
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(IPv6Network((address, 64), strict=False))


def account_key(username: str) -> str:
    """A digest, so that Redis never holds the email addresses being tried."""
    return hashlib.blake2b(username.strip().lower().encode(), digest_size=16).hexdigest()


async def form_username(headers: Headers, body: bytes) -> str | None:
    """The `username` field of a login form, parsed by Starlette as the endpoint will parse it."""

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    request = Request({"type": "http", "headers": headers.raw}, receive)
    try:
        form = await request.form(max_files=0, max_fields=MAX_LOGIN_FORM_FIELDS)
    except MultiPartException:
        return None
    value = form.get("username")
    return value if isinstance(value, str) else None


async def read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The whole body (the body limit outside bounds it), and a `receive` that replays it."""
    messages: deque[Message] = deque()
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            break  # the end of the body, or the client went away: the endpoint sees the same
    body = b"".join(message.get("body", b"") for message in messages)

    async def replay() -> Message:
        return messages.popleft() if messages else await receive()

    return body, replay


def refused(decision: Decision, path: str) -> None:
    logger.info("rate_limited", policy=decision.policy.name, path=path)
    metrics.record_rate_limited(decision.policy.name)


class EmailQuota:
    """The emails one request may cause (CONTRACT.md section 8): each counts against the auth
    quota by the client's IP and by the address it goes to, however the request spelled it
    (so call it with the validated, normalized address)."""

    def __init__(self, limiter: RateLimiter, scope: Scope) -> None:
        self.limiter = limiter
        self.ip = ip_key(client_ip(scope))
        self.path: str = scope["path"]

    async def spend(self, address: str) -> None:
        """Count one email to `address`; raise `RateLimitedError` (429) when either is spent."""
        limiter = self.limiter
        for key in (("ip", self.ip), ("to", account_key(address))):
            decision = await limiter.hit(limiter.auth, "email", *key)
            if not decision.allowed:
                refused(decision, self.path)
                raise RateLimitedError(headers=decision.headers())


class RateLimitMiddleware:
    """Counts each request against its quota; a refused one is the 429 envelope.

    Default quota: by user id when the bearer token is valid (`request_access_claims` verifies
    it once for the rate limiter and authentication), by client IP otherwise. The auth routes:
    the auth quota by IP, and by the account they name too (the tighter one wins).
    """

    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, settings: Settings) -> None:
        self.app = app
        self.limiter = limiter
        self.settings = settings
        prefix = settings.API_V1_PREFIX
        self.auth_endpoints = {
            f"{prefix}/auth/{route}": route.replace("/", "-") for route in AUTH_ROUTES
        }
        self.exempt = {"/health", "/metrics", "/docs", "/redoc", f"{prefix}/openapi.json"}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"] if scope["type"] == "http" else ""
        if not path or path in self.exempt or path.startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        ip = ip_key(client_ip(scope))
        endpoint = self.auth_endpoints.get(path) if scope["method"] == "POST" else None
        if endpoint is not None:
            decision, receive = await self.auth_decision(scope, receive, endpoint, ip)
        elif (claims := request_access_claims(scope, self.settings)) is not None:
            user_id = str(claims.user_id)
            structlog.contextvars.bind_contextvars(user_id=user_id)  # for the access line
            decision = await self.limiter.hit(self.limiter.default, "user", user_id)
        else:
            decision = await self.limiter.hit(self.limiter.default, "ip", ip)

        if not decision.allowed:
            refused(decision, path)
            response = error_response(
                429, RateLimitedError.default_message, None, decision.headers()
            )
            await response(scope, receive, send)
            return

        budget = [(name.encode(), value.encode()) for name, value in decision.headers().items()]

        async def send_with_budget(message: Message) -> None:
            # A 429 from the endpoint (an email quota) carries its own quota's headers.
            if message["type"] == "http.response.start" and message["status"] != 429:
                message["headers"] = [*message.get("headers", ()), *budget]
            await send(message)

        await self.app(scope, receive, send_with_budget)

    async def auth_decision(
        self, scope: Scope, receive: Receive, endpoint: str, ip: str
    ) -> tuple[Decision, Receive]:
        limiter = self.limiter
        decision = await limiter.hit(limiter.auth, endpoint, "ip", ip)
        if not decision.allowed:
            return decision, receive
        account: str | None = None
        if endpoint == "token":
            body, receive = await read_body(receive)
            name = await form_username(Headers(scope=scope), body)
            account = account_key(name) if name else None
        elif endpoint == "verify-email-resend":
            claims = request_access_claims(scope, self.settings)
            account = str(claims.user_id) if claims is not None else None
        if account is not None:
            by_account = await limiter.hit(limiter.auth, endpoint, "account", account)
            if not by_account.allowed or by_account.remaining < decision.remaining:
                decision = by_account
        return decision, receive
