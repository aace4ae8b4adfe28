"""Items: every user works on their own; a superuser sees and manages all of them."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.exceptions import NotFoundError
from app.models import Item, User
from app.models.base import utc_now
from app.repositories import item_repository
from app.repositories.item_repository import ItemRow


def _scope(user: User) -> uuid.UUID | None:
    """The owner filter for this user's queries: none for a superuser, their id otherwise."""
    return None if user.is_superuser else user.id


async def page(
    session: AsyncSession, *, user: User, limit: int, offset: int
) -> tuple[Sequence[ItemRow], int]:
    return await item_repository.page(session, owner_id=_scope(user), limit=limit, offset=offset)


async def get(session: AsyncSession, *, user: User, item_id: uuid.UUID) -> Item:
    item = await item_repository.get(session, item_id, owner_id=_scope(user))
    if item is None:
        # The same answer for "missing" and "someone else's": ids reveal nothing.
        raise NotFoundError(f"Item with id '{item_id}' not found")
    return item


async def create(session: AsyncSession, *, user: User, title: str, description: str | None) -> Item:
    return await item_repository.add(
        session, owner_id=user.id, title=title, description=description
    )


async def update(
    session: AsyncSession, *, user: User, item_id: uuid.UUID, changes: dict[str, Any]
) -> Item:
    item = await get(session, user=user, item_id=item_id)
    return await item_repository.update(session, item, **changes, updated_at=utc_now())


async def delete(session: AsyncSession, *, user: User, item_id: uuid.UUID) -> None:
    item = await get(session, user=user, item_id=item_id)
    await item_repository.delete(session, item)
