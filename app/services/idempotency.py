"""Idempotency keys (IETF draft "The Idempotency-Key HTTP Header Field"): a create runs once.

The first request with a key is processed and its answer stored in the same transaction as its
write; a retry with the same key and request gets that answer again for `KEY_LIFETIME`.
"""

import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.exceptions import ConflictError, IdempotencyKeyReusedError
from app.models import IdempotencyRecord
from app.models.base import utc_now
from app.repositories import idempotency_repository

KEY_LIFETIME = timedelta(hours=24)


@dataclass(frozen=True)
class Answer:
    """What a client got: replayed as it was, byte for byte."""

    status_code: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def fingerprint(*parts: str | bytes) -> str:
    """A digest of what makes two requests the same request (method, path, body)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


async def stored_answer(
    session: AsyncSession, *, user_id: uuid.UUID, key: str, request_fingerprint: str
) -> Answer | None:
    """The answer to replay, or None once this request owns the key and must be processed."""
    if not await idempotency_repository.try_lock(session, user_id=user_id, key=key):
        raise ConflictError("A request with this Idempotency-Key is still being processed")
    record = await idempotency_repository.get(session, user_id=user_id, key=key)
    if record is None:
        return None
    if record.created_at < utc_now() - KEY_LIFETIME:
        # Forgotten: this key only (the worker's retention sweep deletes the rest, off the
        # request path), so the new answer can take its place.
        await idempotency_repository.forget(session, user_id=user_id, key=key)
        return None
    if record.fingerprint != request_fingerprint:
        raise IdempotencyKeyReusedError()
    return Answer(record.status_code, record.body, record.headers)


async def store_answer(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    key: str,
    request_fingerprint: str,
    answer: Answer,
) -> None:
    """Keep the answer; committed with the write it describes, or not at all."""
    record = IdempotencyRecord(
        user_id=user_id,
        key=key,
        fingerprint=request_fingerprint,
        status_code=answer.status_code,
        headers=answer.headers,
        body=answer.body,
    )
    await idempotency_repository.add(session, record)
