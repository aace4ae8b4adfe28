"""Deleting rows that have served their time, one bounded batch per statement.

Each call deletes at most `limit` rows in its own short statement, so a backlog of millions
never holds long locks or runs into the statement timeout; the caller repeats until a batch
comes back short. `SKIP LOCKED` (PostgreSQL; SQLite has one writer anyway) lets two workers
sweep at once without waiting on each other's rows.
"""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Final

from sqlalchemy import ColumnElement, and_, delete, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.models import AccountToken, AuthSession, IdempotencyRecord, OutboxJob

DeleteBatch = Callable[[AsyncSession, datetime, int], Awaitable[int]]


async def _delete_batch(
    session: AsyncSession,
    model: type[Any],
    keys: tuple[InstrumentedAttribute[Any], ...],
    condition: ColumnElement[bool],
    limit: int,
) -> int:
    chosen = select(*keys).where(condition).limit(limit).with_for_update(skip_locked=True)
    target = keys[0] if len(keys) == 1 else tuple_(*keys)
    result = await session.execute(
        delete(model).where(target.in_(chosen)).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def finished_jobs(session: AsyncSession, before: datetime, limit: int) -> int:
    """Jobs that succeeded or failed for good before `before`."""
    finished = and_(OutboxJob.status != "pending", OutboxJob.finished_at < before)
    return await _delete_batch(session, OutboxJob, (OutboxJob.id,), finished, limit)


async def spent_account_tokens(session: AsyncSession, before: datetime, limit: int) -> int:
    """Tokens used (or made unusable) or expired before `before`."""
    spent = or_(AccountToken.used_at < before, AccountToken.expires_at < before)
    return await _delete_batch(session, AccountToken, (AccountToken.id,), spent, limit)


async def ended_sessions(session: AsyncSession, before: datetime, limit: int) -> int:
    """Logins revoked or expired before `before`."""
    ended = or_(AuthSession.revoked_at < before, AuthSession.expires_at < before)
    return await _delete_batch(session, AuthSession, (AuthSession.id,), ended, limit)


async def expired_idempotency_answers(session: AsyncSession, before: datetime, limit: int) -> int:
    """Stored answers created before `before` (an index range on created_at)."""
    keys = (IdempotencyRecord.user_id, IdempotencyRecord.key)
    old = IdempotencyRecord.created_at < before
    return await _delete_batch(session, IdempotencyRecord, keys, old, limit)


# Table name -> its batch delete, in the order the sweep runs them.
SWEEPS: Final[dict[str, DeleteBatch]] = {
    "outbox": finished_jobs,
    "account_tokens": spent_account_tokens,
    "sessions": ended_sessions,
    "idempotency_keys": expired_idempotency_answers,
}
