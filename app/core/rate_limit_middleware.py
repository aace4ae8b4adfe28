"""Which quota a request counts against, and the 429 / budget headers.

Default quota: by user id when the bearer token is valid (signature and expiry, no database),
by client IP otherwise. `POST /auth/token` and `/auth/register`: the auth quota by IP, and for
`/auth/token` also by account (the form's `username`), read from a buffered copy of the body
that is then replayed to the endpoint untouched. Health, metrics and docs are never limited.
"""

import hashlib
from collections import deque
from collections.abc import AsyncGenerator
from ipaddress import IPv6Address, IPv6Network, ip_address
from typing import Final
from urllib.parse import parse_qsl

import orjson
import structlog
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.core import metrics
from app.core.exceptions import error_response
from app.core.middleware import client_ip
from app.core.rate_limit import Decision, RateLimiter
from app.core.security import request_access_claims

logger = structlog.get_logger("app.rate_limit")

MAX_LOGIN_FORM_FIELDS: Final = 16
EXEMPT_PREFIXES: Final = ("/health/", "/docs/", "/redoc/", "/metrics/")


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
    normalized = username.strip().lower().encode()
    return hashlib.blake2b(normalized, digest_size=16).hexdigest()


async def _buffer(receive: Receive) -> tuple[list[Message], bytes]:
    """Every message of the request body (the request guard outside bounds its size)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break  # the client went away; the endpoint will see the same
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return messages, b"".join(chunks)


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that hands out the buffered messages first, then defers to the server."""
    pending = deque(messages)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay


def json_email(body: bytes) -> str | None:
    """The `email` field of a JSON body, if it has one (the endpoint validates it properly)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    email = value.get("email") if isinstance(value, dict) else None
    return email if isinstance(email, str) else None


async def form_username(headers: Headers, body: bytes) -> str | None:
    """The `username` field of a login form, read the way the endpoint will read it."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(
                body.decode("utf-8", "replace"),
                keep_blank_values=True,
                max_num_fields=MAX_LOGIN_FORM_FIELDS,
            )
        except ValueError:
            return None
        values = [value for name, value in pairs if name == "username"]
        return values[-1] if values else None  # the last one wins, as in Starlette's FormData
    if media == "multipart/form-data":

        async def stream() -> AsyncGenerator[bytes]:
            yield body

        parser = MultiPartParser(headers, stream(), max_files=0, max_fields=MAX_LOGIN_FORM_FIELDS)
        try:
            form = await parser.parse()
        except MultiPartException:
            return None
        value = form.get("username")
        return value if isinstance(value, str) else None
    return None


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp, *, limiter: RateLimiter, settings: Settings) -> None:
        self.app = app
        self.limiter = limiter
        self.settings = settings
        prefix = settings.API_V1_PREFIX
        self.token_path = f"{prefix}/auth/token"
        self.register_path = f"{prefix}/auth/register"
        self.reset_path = f"{prefix}/auth/password-reset"
        self.resend_path = f"{prefix}/auth/verify-email/resend"
        # The auth quota by IP for all of these; by account too for logins, reset requests
        # (the JSON body's email) and verification resends (the bearer token's user).
        self.auth_paths = {
            self.token_path: "token",
            self.register_path: "register",
            self.reset_path: "password-reset",
            f"{prefix}/auth/password-reset/confirm": "password-reset-confirm",
            f"{prefix}/auth/verify-email": "verify-email",
            self.resend_path: "verify-email-resend",
        }
        self.exempt = frozenset(
            {"/health", "/metrics", "/docs", "/redoc", f"{prefix}/openapi.json"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"] if scope["type"] == "http" else ""
        if not path or path in self.exempt or path.startswith(EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        ip = ip_key(client_ip(scope))
        if scope["method"] == "POST" and path in self.auth_paths:
            decision, receive = await self._auth_decision(scope, receive, path, ip)
        else:
            claims = request_access_claims(scope, self.settings)
            if claims is None:
                decision = await self.limiter.hit(self.limiter.default, "ip", ip)
            else:
                user_id = str(claims.user_id)
                structlog.contextvars.bind_contextvars(user_id=user_id)  # for the access line
                decision = await self.limiter.hit(self.limiter.default, "user", user_id)

        if not decision.allowed:
            logger.info("rate_limited", policy=decision.policy.name, path=path)
            metrics.record_rate_limited(decision.policy.name)
            response = error_response(
                429, "Too many requests, retry later", None, decision.headers()
            )
            await response(scope, receive, send)
            return

        budget = [(name.encode(), value.encode()) for name, value in decision.headers().items()]

        async def send_with_budget(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *budget]
            await send(message)

        await self.app(scope, receive, send_with_budget)

    async def _auth_decision(
        self, scope: Scope, receive: Receive, path: str, ip: str
    ) -> tuple[Decision, Receive]:
        """The auth quota by IP; by account too where there is one (the tighter one wins).

        The account key is derived from what the request names, whether or not such an account
        exists, so a refusal looks the same for both.
        """
        limiter = self.limiter
        endpoint = self.auth_paths[path]
        decision = await limiter.hit(limiter.auth, endpoint, "ip", ip)
        if not decision.allowed:
            return decision, receive
        account: str | None = None
        if path in (self.token_path, self.reset_path):
            messages, body = await _buffer(receive)
            receive = _replaying(messages, receive)
            headers = Headers(scope=scope)
            name = (
                await form_username(headers, body) if path == self.token_path else json_email(body)
            )
            account = account_key(name) if name else None
        elif path == self.resend_path:
            claims = request_access_claims(scope, self.settings)
            account = str(claims.user_id) if claims is not None else None
        if account is not None:
            by_account = await limiter.hit(limiter.auth, endpoint, "account", account)
            if not by_account.allowed or by_account.remaining < decision.remaining:
                decision = by_account
        return decision, receive
