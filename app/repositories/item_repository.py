"""All SQL about items. Every query takes `owner_id` and filters by it in SQL.

`owner_id=None` means "every owner" and is passed only for superusers (see item_service), so
a forgotten check elsewhere can never hand one user's row to another.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from sqlalchemy import ColumnElement, Select, bindparam, func, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Item
from app.repositories.driver import DriverQuery


class ItemRow(Protocol):
    """What a page holds: an item's columns (an `Item`, or a plain row with the same names)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str | None: ...
    @property
    def owner_id(self) -> uuid.UUID: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def updated_at(self) -> datetime: ...


class PageRow(NamedTuple):
    """One row of a page: an item's columns and the total the page query counts beside them."""

    id: uuid.UUID
    title: str
    description: str | None
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    total: int


def _owned_by(owner_id: uuid.UUID | None) -> ColumnElement[bool]:
    return true() if owner_id is None else Item.owner_id == owner_id


def _page_statement(scope: ColumnElement[bool]) -> Select[Any]:
    """Newest first (id breaks ties), each row carrying the total as a scalar subquery.

    One round trip for page and total: PostgreSQL counts with an index-only scan beside it.
    Plain columns, not `Item` entities: a page is only read and serialized, and skipping the
    ORM's identity map and instance construction is the larger part of this query's CPU cost.
    """
    total = select(func.count()).select_from(Item).where(scope).scalar_subquery()
    return (
        select(*Item.__table__.columns, total.label("total"))
        .where(scope)
        .order_by(Item.created_at.desc(), Item.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )


# The list is the hottest query: built once, and run through asyncpg directly on PostgreSQL.
_OWN_PAGE = DriverQuery(_page_statement(Item.owner_id == bindparam("owner_id")))
_ALL_PAGE = DriverQuery(_page_statement(true()))


async def page(
    session: AsyncSession, *, owner_id: uuid.UUID | None, limit: int, offset: int
) -> tuple[Sequence[ItemRow], int]:
    """A page of items and how many there are in all.

    Only a page past the end, which carries no row to read the total from, needs a second query.
    """
    params: dict[str, Any] = {"limit": limit, "offset": offset}
    if owner_id is not None:
        params["owner_id"] = owner_id
    query = _ALL_PAGE if owner_id is None else _OWN_PAGE
    rows = [PageRow(*row) for row in await query.fetch(session, params)]
    if rows:
        return rows, rows[0].total
    scope = _owned_by(owner_id)
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
