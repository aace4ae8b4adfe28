"""Items: every user works on their own; a superuser sees and manages all of them.

The shared rules live in `owned_resources`; an item's own business rules would go here.
"""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models import Item, UserView
from app.repositories import item_repository
from app.repositories.owned import Versions
from app.repositories.pages import PageRows, Position
from app.services import owned_resources


async def page(
    connection: AsyncConnection,
    *,
    user: UserView,
    limit: int,
    offset: int | None,
    after: Position | None,
) -> PageRows:
    return await owned_resources.page(
        connection, item_repository.PAGES, user=user, limit=limit, offset=offset, after=after
    )


async def get(session: AsyncSession, *, user: UserView, item_id: uuid.UUID) -> Item:
    return await owned_resources.get(session, Item, item_id, user=user)


async def create(
    session: AsyncSession, *, user: UserView, title: str, description: str | None
) -> Item:
    return await owned_resources.create(
        session, Item, user=user, title=title, description=description
    )


async def update(
    session: AsyncSession,
    *,
    user: UserView,
    item_id: uuid.UUID,
    changes: dict[str, Any],
    versions: Versions = None,
) -> Item:
    return await owned_resources.update(
        session, Item, item_id, user=user, changes=changes, versions=versions
    )


async def delete(
    session: AsyncSession, *, user: UserView, item_id: uuid.UUID, versions: Versions = None
) -> None:
    await owned_resources.delete(session, Item, item_id, user=user, versions=versions)
