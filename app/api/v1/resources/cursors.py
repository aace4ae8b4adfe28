"""Opaque, signed page cursors: the position of the last row a page showed.

A cursor is `<position>.<tag>`, both base64url: the position is the row's `(created_at, id)`,
the tag an HMAC-SHA256 (truncated to 144 bits) of the position and the collection it belongs to,
under the cursor key (derived from SECRET_KEY for this use only: app.core.keys). Clients cannot
forge or alter one, nor carry one to another collection; anything else is `InvalidCursorError`,
answered 422. A cursor signed under a previous key verifies while that key is listed.
"""

import base64
import binascii
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from app.repositories.pages import Position

__all__ = ["MAX_CURSOR_LENGTH", "InvalidCursorError", "Position", "decode", "encode"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TAG_BYTES = 18  # 144 bits: base64 without padding bits, so no two spellings decode alike
MAX_CURSOR_LENGTH = 200
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class InvalidCursorError(ValueError):
    """Not a cursor this service issued for this collection."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict: only the unpadded base64url alphabet, and only the one spelling `_b64` writes.

    `urlsafe_b64decode` skips characters outside the alphabet, so an altered cursor would
    still read as the original one.
    """
    if not _BASE64URL.fullmatch(text):
        raise InvalidCursorError("malformed cursor")
    raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    if _b64(raw) != text:  # leftover bits that another spelling would not have
        raise InvalidCursorError("malformed cursor")
    return raw


def _tag(key: bytes, collection: str, position: bytes) -> bytes:
    message = collection.encode() + b"\0" + position
    return hmac.new(key, message, hashlib.sha256).digest()[:TAG_BYTES]


def encode(position: Position, *, key: bytes, collection: str) -> str:
    micros = (position.created_at - EPOCH) // timedelta(microseconds=1)
    raw = micros.to_bytes(8, "big", signed=True) + position.id.bytes
    return f"{_b64(raw)}.{_b64(_tag(key, collection, raw))}"


def decode(cursor: str, *, keys: Iterable[bytes], collection: str) -> Position:
    """The position, if one of `keys` (the current cursor key first, then previous ones) made
    the tag. Trying each keeps cursors short: they carry no key id."""
    if len(cursor) > MAX_CURSOR_LENGTH or cursor.count(".") != 1 or not cursor.isascii():
        raise InvalidCursorError("malformed cursor")
    encoded, tag = cursor.split(".")
    try:
        raw, given = _unb64(encoded), _unb64(tag)
    except (binascii.Error, ValueError):
        raise InvalidCursorError("malformed cursor") from None
    if len(raw) != 24 or not any(
        hmac.compare_digest(given, _tag(key, collection, raw)) for key in keys
    ):
        raise InvalidCursorError("cursor not issued for this collection")
    micros = int.from_bytes(raw[:8], "big", signed=True)
    return Position(EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=raw[8:]))
