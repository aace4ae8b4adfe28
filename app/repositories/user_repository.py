"""All SQL about users."""

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import User
from app.repositories import pages
from app.repositories.pages import Position


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


_PAGES = pages.statements(User, scope=sa.true())


async def page(
    connection: AsyncConnection, *, limit: int, offset: int, after: Position | None
) -> pages.PageRows:
    """Users, newest first, and how many there are in all."""
    return await pages.fetch(connection, _PAGES, limit=limit, offset=offset, after=after)
