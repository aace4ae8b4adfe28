"""All SQL about emailed single-use tokens (stored as SHA-256 digests only)."""

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AccountToken
from app.models.base import utc_now


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


async def consume(
    session: AsyncSession, *, token_hash: str, purpose: str
) -> tuple[uuid.UUID, str] | None:
    """Spend a usable token: (user id, address) for exactly one of any number of concurrent
    callers, None for everyone else and for unknown, used or expired tokens.

    One conditional UPDATE, and the transaction's first statement, so that SQLite's writer lock
    (PostgreSQL's row lock) orders concurrent callers and the second sees the token used.
    """
    now = utc_now()
    row = (
        await session.execute(
            update(AccountToken)
            .where(
                AccountToken.token_hash == token_hash,
                AccountToken.purpose == purpose,
                AccountToken.used_at.is_(None),
                AccountToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(AccountToken.user_id, AccountToken.email)
            .execution_options(synchronize_session=False)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def invalidate(session: AsyncSession, *, user_id: uuid.UUID, purpose: str) -> None:
    """Every outstanding token of this purpose for the user stops working."""
    await session.execute(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose == purpose,
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
