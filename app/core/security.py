"""Password hashing (Argon2id, off the event loop) and JWT issue/verify.

Revocation lives in the database (the `sessions` row every access token names). Tokens are
signed with the current key and name it (`kid`); access tokens with the secret itself, refresh
tokens with a key derived from it (app.core.keys), so neither verifies as the other.
"""

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, Literal

import anyio
import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from starlette.datastructures import Headers
from starlette.types import Scope

from app.config import Settings
from app.core.keys import SigningKey

TokenType = Literal["access", "refresh"]

# OWASP's Argon2id baseline (m=19 MiB, t=2, p=1: a login storm cannot occupy every core).
password_hash = PasswordHash(
    (Argon2Hasher(time_cost=2, memory_cost=19_456, parallelism=1, hash_len=32, salt_len=16),)
)
MAX_CONCURRENT_HASHES = 4  # hashing threads at once: logins leave the thread pool to others
_jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})


@cache
def _hash_limiter() -> anyio.CapacityLimiter:
    return anyio.CapacityLimiter(MAX_CONCURRENT_HASHES)


@cache
def _dummy_hash() -> str:
    return password_hash.hash(secrets.token_urlsafe(16))


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(password_hash.hash, password, limiter=_hash_limiter())


async def verify_password(password: str, hashed: str | None) -> tuple[bool, str | None]:
    """(matches, new hash when the stored one uses outdated parameters).

    With `hashed=None` (unknown account) a dummy hash is verified: the time reveals nothing.
    """

    def verify() -> tuple[bool, str | None]:
        if hashed is None:
            password_hash.verify(password, _dummy_hash())
            return False, None
        return password_hash.verify_and_update(password, hashed)

    return await anyio.to_thread.run_sync(verify, limiter=_hash_limiter())


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: uuid.UUID
    expires_at: datetime


class InvalidTokenError(Exception):
    """Any reason a token is refused; the reason is never shown to the client."""


def create_token(
    settings: Settings,
    *,
    token_type: TokenType,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    jti: uuid.UUID,
    lifetime: timedelta,
) -> tuple[str, datetime]:
    """A signed token and its expiry time."""
    now = datetime.now(UTC)
    expires_at = now + lifetime
    claims = {
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "sub": str(user_id),
        "sid": str(session_id),
        "jti": str(jti),
        "typ": token_type,
        "iat": now,
        "nbf": now,
        "exp": expires_at,
    }
    key = settings.keys.current
    signed = _jwt.encode(claims, _key_for(key, token_type), "HS256", headers={"kid": key.kid})
    return signed, expires_at


def _key_for(key: SigningKey, token_type: TokenType) -> str | bytes:
    return key.access if token_type == "access" else key.refresh  # noqa: S105


# Where `request_access_claims` keeps its answer in the request's ASGI scope.
ACCESS_CLAIMS_KEY = "keel.access_claims"
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "sid", "jti", "typ"]


def decode_token(settings: Settings, token: str, token_type: TokenType) -> TokenClaims:
    """Verify signature (HS256 only), expiry, issuer, audience and type; raise InvalidTokenError."""
    try:
        claims = _verified_claims(settings, token, token_type)
        if claims["typ"] != token_type:
            raise InvalidTokenError(f"expected a {token_type} token")
        return TokenClaims(
            user_id=uuid.UUID(claims["sub"]),
            session_id=uuid.UUID(claims["sid"]),
            jti=uuid.UUID(claims["jti"]),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError, KeyError) as error:
        raise InvalidTokenError(str(error)) from None


def _verified_claims(settings: Settings, token: str, token_type: TokenType) -> dict[str, Any]:
    """The claims, verified with the key the token names. The current key is tried first
    without reading the header apart: the hot path parses the token once."""
    key = settings.keys.current
    try:
        decoded = _decode(settings, token, _key_for(key, token_type))
    except jwt.InvalidSignatureError:
        previous = settings.keys.by_kid(jwt.get_unverified_header(token).get("kid"))
        if previous is None or previous is key:
            raise
        key = previous
        decoded = _decode(settings, token, _key_for(key, token_type))
    if decoded["header"].get("kid") != key.kid:
        raise InvalidTokenError("the token does not name the key that signed it")
    claims: dict[str, Any] = decoded["payload"]
    return claims


def _decode(settings: Settings, token: str, key: str | bytes) -> dict[str, Any]:
    return _jwt.decode_complete(
        token,
        key,
        algorithms=["HS256"],  # pinned: never taken from the token's own header
        audience=settings.JWT_AUDIENCE,
        issuer=settings.JWT_ISSUER,
        options={"require": REQUIRED_CLAIMS},
        leeway=5,
    )


def request_access_claims(scope: Scope, settings: Settings) -> TokenClaims | None:
    """The claims of a valid access token in the request's `Authorization: Bearer`, else None.

    Signature and expiry only (no database): whether the session is live is for authentication
    to check. Kept in the scope, so the rate limiter and authentication verify the token once.
    """
    if ACCESS_CLAIMS_KEY not in scope:
        authorization = Headers(scope=scope).get("authorization")
        scope[ACCESS_CLAIMS_KEY] = bearer_claims(settings, authorization)
    claims: TokenClaims | None = scope[ACCESS_CLAIMS_KEY]
    return claims


def bearer_claims(settings: Settings, authorization: str | None) -> TokenClaims | None:
    """The claims of a valid access token in an `Authorization` header's value, else None."""
    if not authorization or authorization[:7].lower() != "bearer ":
        return None
    try:
        return decode_token(settings, authorization[7:].strip(), "access")
    except InvalidTokenError:
        return None
