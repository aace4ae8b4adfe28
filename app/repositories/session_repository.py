"""All SQL about login sessions (the revocable families of refresh tokens)."""

import uuid
from dataclasses import fields
from datetime import datetime, timedelta

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import AuthSession, User, UserView
from app.models.base import utc_now
from app.repositories.driver import DriverQuery


async def add(
    session: AsyncSession, *, user_id: uuid.UUID, refresh_jti: uuid.UUID, expires_at: datetime
) -> AuthSession:
    row = AuthSession(user_id=user_id, refresh_jti=refresh_jti, expires_at=expires_at)
    session.add(row)
    await session.flush()
    return row


# Every authenticated request runs it: built once, and run through asyncpg on PostgreSQL.
_ACTIVE_USER = DriverQuery(
    select(*(User.__table__.c[field.name] for field in fields(UserView)))
    .join(AuthSession, AuthSession.user_id == User.id)
    .where(
        AuthSession.id == bindparam("session_id"),
        User.id == bindparam("user_id"),
        AuthSession.revoked_at.is_(None),
        AuthSession.expires_at > bindparam("now"),
        User.is_active.is_(True),
    )
)


async def active_user(
    connection: AsyncConnection, *, user_id: uuid.UUID, session_id: uuid.UUID
) -> UserView | None:
    """The active user that owns a live (not revoked, not expired) session: one query."""
    params = {"session_id": session_id, "user_id": user_id, "now": utc_now()}
    rows = await _ACTIVE_USER.fetch(connection, params)
    return UserView(**rows[0]._asdict()) if rows else None


async def rotate_refresh(
    session: AsyncSession,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    old_jti: uuid.UUID,
    new_jti: uuid.UUID,
) -> bool:
    """Swap the session's refresh token id, only if `old_jti` is still the current one.

    A single conditional UPDATE: two concurrent uses of one refresh token cannot both win.
    """
    result = await session.execute(
        update(AuthSession)
        .where(
            AuthSession.id == session_id,
            AuthSession.user_id == user_id,
            AuthSession.refresh_jti == old_jti,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > utc_now(),
        )
        .values(refresh_jti=new_jti, previous_refresh_jti=old_jti, rotated_at=utc_now())
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def current_jti_if_just_rotated(
    session: AsyncSession,
    *,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    old_jti: uuid.UUID,
    grace: timedelta,
) -> uuid.UUID | None:
    """The session's current refresh token id when `old_jti` was spent within `grace`.

    None for anything else: an older token, a revoked or expired session, a window passed.
    """
    now = utc_now()
    return (
        await session.execute(
            select(AuthSession.refresh_jti).where(
                AuthSession.id == session_id,
                AuthSession.user_id == user_id,
                AuthSession.previous_refresh_jti == old_jti,
                AuthSession.rotated_at >= now - grace,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > now,
            )
        )
    ).scalar_one_or_none()


async def revoke(session: AsyncSession, *, session_id: uuid.UUID) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utc_now())
        .execution_options(synchronize_session=False)
    )


async def revoke_all_for_user(session: AsyncSession, *, user_id: uuid.UUID) -> None:
    await session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=utc_now())
        .execution_options(synchronize_session=False)
    )
