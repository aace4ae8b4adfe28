"""Stored answers to creates sent with an `Idempotency-Key`."""

import uuid

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import IdempotencyRecord


async def try_lock(session: AsyncSession, *, user_id: uuid.UUID, key: str) -> bool:
    """Hold the key until this transaction ends; False while another request holds it.

    PostgreSQL: a transaction-scoped advisory lock, so a retry that arrives while the first
    request is still running is told so at once instead of waiting for it. SQLite runs one
    write transaction at a time, and the table's primary key refuses a second answer.
    """
    if session.get_bind().dialect.name != "postgresql":
        return True
    lock = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:name, 0))")
    return bool(await session.scalar(lock, {"name": f"idempotency:{user_id}:{key}"}))


async def get(session: AsyncSession, *, user_id: uuid.UUID, key: str) -> IdempotencyRecord | None:
    query = select(IdempotencyRecord).where(
        IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
    )
    return (await session.execute(query)).scalar_one_or_none()


async def forget(session: AsyncSession, *, user_id: uuid.UUID, key: str) -> None:
    await session.execute(
        delete(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
        )
    )


async def add(session: AsyncSession, record: IdempotencyRecord) -> None:
    session.add(record)
    await session.flush()
