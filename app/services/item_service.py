"""Items: every user works on their own; a superuser sees and manages all of them."""

import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.cursors import Position
from app.core.exceptions import AppException, NotFoundError, PreconditionFailedError
from app.models import Item, User
from app.repositories import item_repository, owned
from app.repositories.pages import PageRows


def _scope(user: User) -> uuid.UUID | None:
    """The owner filter for this user's queries: none for a superuser, their id otherwise."""
    return None if user.is_superuser else user.id


async def page(
    session: AsyncSession, *, user: User, limit: int, offset: int | None, after: Position | None
) -> PageRows:
    return await item_repository.page(
        session, owner_id=_scope(user), limit=limit, offset=offset or 0, after=after
    )


async def get(session: AsyncSession, *, user: User, item_id: uuid.UUID) -> Item:
    item = await owned.get_one(session, Item, item_id, owner_id=_scope(user))
    if item is None:
        raise _not_found(item_id)
    return item


async def create(session: AsyncSession, *, user: User, title: str, description: str | None) -> Item:
    return await item_repository.add(
        session, owner_id=user.id, title=title, description=description
    )


async def update(
    session: AsyncSession,
    *,
    user: User,
    item_id: uuid.UUID,
    changes: dict[str, Any],
    versions: Collection[int] | None = None,
) -> Item:
    """Apply the changes if the item is one of `versions` (None: whatever its version)."""
    item = await owned.update_one(
        session, Item, item_id, owner_id=_scope(user), versions=versions, values=changes
    )
    if item is None:
        raise await _missing_or_changed(session, user, item_id, versions)
    return item


async def delete(
    session: AsyncSession,
    *,
    user: User,
    item_id: uuid.UUID,
    versions: Collection[int] | None = None,
) -> None:
    deleted = await owned.delete_one(
        session, Item, item_id, owner_id=_scope(user), versions=versions
    )
    if not deleted:
        raise await _missing_or_changed(session, user, item_id, versions)


def _not_found(item_id: uuid.UUID) -> NotFoundError:
    # The same answer for "missing" and "someone else's": ids reveal nothing.
    return NotFoundError(f"Item with id '{item_id}' not found")


async def _missing_or_changed(
    session: AsyncSession, user: User, item_id: uuid.UUID, versions: Collection[int] | None
) -> AppException:
    """Why a conditional write matched no row: the item is gone, or it has changed."""
    if versions is not None and await owned.exists_one(
        session, Item, item_id, owner_id=_scope(user)
    ):
        return PreconditionFailedError()
    return _not_found(item_id)
