"""All SQL about items. Every query takes `owner_id` and filters by it in SQL.

`owner_id=None` means "every owner" and is passed only for superusers (see item_service), so
a forgotten check elsewhere can never hand one user's row to another.
"""

import uuid
from typing import Any

from sqlalchemy import bindparam, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cursors import Position
from app.models import Item
from app.repositories import pages

# The list is the hottest query: its statements are built once, not on every request. Plain
# columns, not `Item` entities: a page is only read and serialized, and skipping the ORM's
# identity map and instance construction is the larger part of this query's CPU cost.
_OWN_PAGES = pages.statements(
    Item, *Item.__table__.columns, scope=Item.owner_id == bindparam("owner_id")
)
_ALL_PAGES = pages.statements(Item, *Item.__table__.columns, scope=true())


async def page(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID | None,
    limit: int,
    offset: int,
    after: Position | None,
) -> pages.PageRows:
    """A page of items (`ItemRow`s) and how many there are in all."""
    if owner_id is None:
        return await pages.fetch(session, _ALL_PAGES, limit=limit, offset=offset, after=after)
    return await pages.fetch(
        session, _OWN_PAGES, limit=limit, offset=offset, after=after, owner_id=owner_id
    )


async def add(session: AsyncSession, *, owner_id: uuid.UUID, **values: Any) -> Item:
    item = Item(owner_id=owner_id, **values)
    session.add(item)
    await session.flush()
    return item
