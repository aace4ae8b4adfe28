"""All SQL about emailed single-use tokens (stored as SHA-256 digests only)."""

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AccountToken
from app.models.base import utc_now


class Usable(NamedTuple):
    """Whose token it is, and the address it was sent to."""

    user_id: uuid.UUID
    email: str


async def add(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    purpose: str,
    token_hash: str,
    email: str,
    expires_at: datetime,
) -> None:
    session.add(
        AccountToken(
            user_id=user_id,
            purpose=purpose,
            token_hash=token_hash,
            email=email,
            expires_at=expires_at,
        )
    )
    await session.flush()


def _usable(token_hash: str, purpose: str, now: datetime) -> list[ColumnElement[bool]]:
    return [
        AccountToken.token_hash == token_hash,
        AccountToken.purpose == purpose,
        AccountToken.used_at.is_(None),
        AccountToken.expires_at > now,
    ]


async def find(session: AsyncSession, *, token_hash: str, purpose: str) -> Usable | None:
    """The owner and address of a token that is usable now (nothing is spent)."""
    query = select(AccountToken.user_id, AccountToken.email).where(
        *_usable(token_hash, purpose, utc_now())
    )
    row = (await session.execute(query)).first()
    return Usable(row.user_id, row.email) if row is not None else None


async def consume(session: AsyncSession, *, token_hash: str, purpose: str) -> bool:
    """Spend a usable token: True for exactly one of any number of concurrent callers."""
    now = utc_now()
    statement = (
        update(AccountToken)
        .where(*_usable(token_hash, purpose, now))
        .values(used_at=now)
        .returning(AccountToken.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).first() is not None


async def invalidate(
    session: AsyncSession, *, user_id: uuid.UUID, purposes: Collection[str]
) -> None:
    """Every outstanding token of these purposes for the user stops working."""
    await session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose.in_(purposes),
            AccountToken.used_at.is_(None),
        )
        .values(used_at=utc_now())
        .execution_options(synchronize_session=False)
    )


async def exists(session: AsyncSession, *, token_hash: str) -> bool:
    """Whether this token was stored already (used, expired or not)."""
    found = await session.scalar(
        select(AccountToken.id).where(AccountToken.token_hash == token_hash)
    )
    return found is not None
