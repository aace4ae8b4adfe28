"""All SQL about items. Every query takes `owner_id` and filters by it in SQL.

`owner_id=None` means "every owner" and is passed only for superusers (see item_service), so
a forgotten check elsewhere can never hand one user's row to another.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Item


def _owned_by(owner_id: uuid.UUID | None) -> ColumnElement[bool]:
    return true() if owner_id is None else Item.owner_id == owner_id


async def page(
    session: AsyncSession, *, owner_id: uuid.UUID | None, limit: int, offset: int
) -> tuple[Sequence[Item], int]:
    """Newest first (id breaks ties), with the total, in one round trip.

    The total is a scalar subquery beside the page (an index-only count); only a page past the
    end, which carries no row to read it from, needs a second query.
    """
    scope = _owned_by(owner_id)
    total = select(func.count()).select_from(Item).where(scope).scalar_subquery()
    rows = (
        await session.execute(
            select(Item, total)
            .where(scope)
            .order_by(Item.created_at.desc(), Item.id.desc())
            .limit(limit)
            .offset(offset)
        )
    ).all()
    if rows:
        return [row[0] for row in rows], rows[0][1]
    count = await session.scalar(select(func.count()).select_from(Item).where(scope))
    return [], count or 0


async def get(
    session: AsyncSession, item_id: uuid.UUID, *, owner_id: uuid.UUID | None
) -> Item | None:
    query = select(Item).where(Item.id == item_id, _owned_by(owner_id))
    return (await session.execute(query)).scalar_one_or_none()


async def add(session: AsyncSession, *, owner_id: uuid.UUID, **values: Any) -> Item:
    item = Item(owner_id=owner_id, **values)
    session.add(item)
    await session.flush()
    return item


async def update(session: AsyncSession, item: Item, **values: Any) -> Item:
    for name, value in values.items():
        setattr(item, name, value)
    await session.flush()
    return item


async def delete(session: AsyncSession, item: Item) -> None:
    await session.delete(item)
    await session.flush()
