"""All SQL about users."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import User


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def get_by_email(session: AsyncSession, email: str) -> User | None:
    result = await session.execute(select(User).where(User.email == email.lower()))
    return result.scalar_one_or_none()


async def email_taken(
    session: AsyncSession, email: str, *, except_id: uuid.UUID | None = None
) -> bool:
    query = select(User.id).where(User.email == email.lower())
    if except_id is not None:
        query = query.where(User.id != except_id)
    return (await session.execute(query.limit(1))).first() is not None


async def add(session: AsyncSession, **values: Any) -> User:
    user = User(**values)
    session.add(user)
    await session.flush()
    return user


async def update(session: AsyncSession, user: User, **values: Any) -> User:
    session.add(user)  # the caller's own account comes detached from authentication's session
    for name, value in values.items():
        setattr(user, name, value)
    await session.flush()
    return user


async def delete(session: AsyncSession, user: User) -> None:
    await session.delete(user)
    await session.flush()


async def page(session: AsyncSession, *, limit: int, offset: int) -> tuple[Sequence[User], int]:
    """Users, newest first, and how many there are in all."""
    total = select(func.count()).select_from(User).scalar_subquery()
    rows = (
        await session.execute(
            select(User, total)
            .order_by(User.created_at.desc(), User.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ).all()
    if rows:
        return [row[0] for row in rows], rows[0][1]
    count = await session.scalar(select(func.count()).select_from(User))
    return [], count or 0
