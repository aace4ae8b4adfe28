"""Rules every owned resource shares: a user works on their own rows, a superuser on all.

Each function takes the resource's model (a `models.base.OwnedResource`): a resource needs a
service module of its own only for rules of its own. Someone else's row answers exactly like a
missing one: ids reveal nothing. A write with `versions` (from If-Match) changes the row only
if it still has one of them.
"""

import uuid
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.exceptions import AppException, NotFoundError, PreconditionFailedError
from app.models import UserView
from app.models.base import OwnedResource
from app.repositories import owned
from app.repositories.owned import Versions
from app.repositories.pages import PageRows, Position

M = TypeVar("M", bound=OwnedResource)


def scope(user: UserView) -> uuid.UUID | None:
    """The owner filter for this user's queries: none for a superuser, their id otherwise."""
    return None if user.is_superuser else user.id


async def page(
    connection: AsyncConnection,
    model: type[OwnedResource],
    *,
    user: UserView,
    limit: int,
    offset: int | None,
    after: Position | None,
) -> PageRows:
    """The user's rows (a superuser's: everybody's), newest first, with the total."""
    return await owned.page(
        connection, model, owner_id=scope(user), limit=limit, offset=offset or 0, after=after
    )


async def get(session: AsyncSession, model: type[M], row_id: uuid.UUID, *, user: UserView) -> M:
    row = await owned.get_one(session, model, row_id, owner_id=scope(user))
    if row is None:
        raise _not_found(model, row_id)
    return row


async def create(session: AsyncSession, model: type[M], *, user: UserView, **values: Any) -> M:
    return await owned.add(session, model, owner_id=user.id, **values)


async def update(
    session: AsyncSession,
    model: type[M],
    row_id: uuid.UUID,
    *,
    user: UserView,
    changes: dict[str, Any],
    versions: Versions = None,
) -> M:
    row = await owned.update_one(
        session, model, row_id, owner_id=scope(user), versions=versions, values=changes
    )
    if row is None:
        raise await _missing_or_changed(session, model, row_id, user, versions)
    return row


async def delete(
    session: AsyncSession,
    model: type[OwnedResource],
    row_id: uuid.UUID,
    *,
    user: UserView,
    versions: Versions = None,
) -> None:
    if not await owned.delete_one(session, model, row_id, owner_id=scope(user), versions=versions):
        raise await _missing_or_changed(session, model, row_id, user, versions)


def _not_found(model: type[OwnedResource], row_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"{model.__name__} with id '{row_id}' not found")


async def _missing_or_changed(
    session: AsyncSession,
    model: type[OwnedResource],
    row_id: uuid.UUID,
    user: UserView,
    versions: Versions,
) -> AppException:
    """Why a write matched no row: the row is gone (or not the user's), or it has changed."""
    if versions is not None and await owned.exists_one(
        session, model, row_id, owner_id=scope(user)
    ):
        return PreconditionFailedError()
    return _not_found(model, row_id)
