"""All SQL about users.

Writes state their precondition: `lock` loads the row for a change decided in this transaction
(PostgreSQL holds it until the commit), and `update` changes it in one statement that names
what must still hold. No write takes in a copy of the row loaded elsewhere.
"""

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import User
from app.models.base import utc_now
from app.repositories import pages
from app.repositories.pages import Position


async def get(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.get(User, user_id)


async def lock(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user's current row, locked until this transaction ends (on PostgreSQL).

    FOR NO KEY UPDATE: inserts that only reference the user (its items, a login) go on.
    """
    query = (
        select(User)
        .where(User.id == user_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar_one_or_none()


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


async def update(
    session: AsyncSession, user_id: uuid.UUID, *conditions: ColumnElement[bool], **values: Any
) -> User | None:
    """Set `values` in one statement, only while `conditions` hold; None when they did not.

    Every value given is written, even one equal to what this request last saw.
    """
    if "email" in values:
        values["email"] = values["email"].lower()
    statement = (
        sa.update(User)
        .where(User.id == user_id, *conditions)
        .values(**values, updated_at=utc_now())
        .returning(User)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def delete(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Delete the account (its rows go with it: ON DELETE CASCADE); False if it was gone."""
    statement = (
        sa.delete(User)
        .where(User.id == user_id)
        .returning(User.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).first() is not None


_PAGES = pages.statements(User, scope=sa.true())


async def page(
    connection: AsyncConnection, *, limit: int, offset: int, after: Position | None
) -> pages.PageRows:
    """Users, newest first, and how many there are in all."""
    return await pages.fetch(connection, _PAGES, limit=limit, offset=offset, after=after)
