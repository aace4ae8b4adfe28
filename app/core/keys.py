"""The keys Keel signs and verifies with, derived once from SECRET_KEY and PREVIOUS_SECRET_KEYS.

Access tokens are signed with the secret itself (HS256), so a service that shares the secret can
verify them. Every other use gets its own key, HMAC-SHA256(secret, purpose label): a signature
made for one use never verifies in another. `kid` names a secret without revealing it.
"""

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

Purpose = Literal["refresh-token", "cursor", "account-token", "key-id"]
KID_HEX_DIGITS = 16  # 64 bits: enough that two keys never share an id


def derive(secret: str, purpose: Purpose) -> bytes:
    """A 256-bit key for one purpose; knowing it tells nothing of the secret or the others."""
    return hmac.new(secret.encode(), f"keel/v1/{purpose}".encode(), hashlib.sha256).digest()


def key_id(secret: str) -> str:
    """The `kid` of tokens signed under `secret`: a truncated hash of a derived value."""
    return hashlib.sha256(derive(secret, "key-id")).hexdigest()[:KID_HEX_DIGITS]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One secret and the keys derived from it."""

    kid: str
    access: str = field(repr=False)  # the secret itself: HS256 access tokens
    refresh: bytes = field(repr=False)
    cursor: bytes = field(repr=False)
    account_token: bytes = field(repr=False)  # the links in emails (app/services/account_service)

    @classmethod
    def from_secret(cls, secret: str) -> "SigningKey":
        return cls(
            kid=key_id(secret),
            access=secret,
            refresh=derive(secret, "refresh-token"),
            cursor=derive(secret, "cursor"),
            account_token=derive(secret, "account-token"),
        )


@dataclass(frozen=True, slots=True)
class Keyring:
    """`current` signs; it and the previous keys verify."""

    current: SigningKey
    previous: tuple[SigningKey, ...] = ()
    _by_kid: dict[str, SigningKey] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_secrets(cls, current: str, previous: Iterable[str] = ()) -> "Keyring":
        keys = [SigningKey.from_secret(secret) for secret in (current, *previous)]
        # Current first: a previous key listed twice, or the current one listed again, is moot.
        by_kid: dict[str, SigningKey] = {}
        for key in keys:
            by_kid.setdefault(key.kid, key)
        retired = tuple(key for kid, key in by_kid.items() if kid != keys[0].kid)
        return cls(keys[0], retired, by_kid)

    @property
    def verifying(self) -> tuple[SigningKey, ...]:
        """Every key that verifies, the current one first."""
        return (self.current, *self.previous)

    def by_kid(self, kid: object) -> SigningKey | None:
        """The key a token names, if it is one of ours."""
        return self._by_kid.get(kid) if isinstance(kid, str) else None
