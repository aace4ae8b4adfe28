"""Queries every owned, versioned resource shares: owner-scoped in SQL, conditional on a version.

A resource's service calls these with its model (a `models.base.OwnedResource`), e.g.
`owned.update_one(session, Item, item_id, owner_id=..., versions=..., values=...)`.
`owner_id=None` means "every owner" and is passed only for superusers, so a forgotten check
elsewhere can never hand one user's row to another.
"""

import uuid
from collections.abc import Collection
from typing import Any, NamedTuple, TypeVar

import sqlalchemy as sa
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.models.base import OwnedResource, utc_now
from app.repositories import pages
from app.repositories.pages import Position

M = TypeVar("M", bound=OwnedResource)
Owner = uuid.UUID | None  # None: every owner (superusers only)
Versions = Collection[int] | None  # the versions an If-Match admits; None: any


def owned_by(model: type[OwnedResource], owner_id: Owner) -> ColumnElement[bool]:
    return sa.true() if owner_id is None else model.owner_id == owner_id


def _matching(
    model: type[OwnedResource], row_id: uuid.UUID, owner_id: Owner, versions: Versions
) -> list[ColumnElement[bool]]:
    conditions = [model.id == row_id, owned_by(model, owner_id)]
    if versions is not None:  # If-Match: decided by the statement that writes, never before it
        conditions.append(model.version.in_(versions))
    return conditions


class OwnedPages(NamedTuple):
    """A resource's page statements: one owner's rows, and everybody's (for superusers)."""

    own: pages.PageStatements
    everybody: pages.PageStatements


_PAGE_STATEMENTS: dict[type[OwnedResource], OwnedPages] = {}


def page_statements(model: type[OwnedResource]) -> OwnedPages:
    """Built once per resource, on its first page."""
    statements = _PAGE_STATEMENTS.get(model)
    if statements is None:
        own = pages.statements(model, scope=model.owner_id == sa.bindparam("owner_id"))
        statements = OwnedPages(own, pages.statements(model, scope=sa.true()))
        _PAGE_STATEMENTS[model] = statements
    return statements


async def page(
    connection: AsyncConnection,
    model: type[OwnedResource],
    *,
    owner_id: Owner,
    limit: int,
    offset: int,
    after: Position | None,
) -> pages.PageRows:
    """Newest first, by offset or after a cursor's position, with the total."""
    statements = page_statements(model)
    if owner_id is None:
        return await pages.fetch(
            connection, statements.everybody, limit=limit, offset=offset, after=after
        )
    return await pages.fetch(
        connection, statements.own, limit=limit, offset=offset, after=after, owner_id=owner_id
    )


async def add(session: AsyncSession, model: type[M], **values: Any) -> M:
    row = model(**values)
    session.add(row)
    await session.flush()
    return row


async def get_one(
    session: AsyncSession, model: type[M], row_id: uuid.UUID, *, owner_id: Owner
) -> M | None:
    query = sa.select(model).where(*_matching(model, row_id, owner_id, None))
    return (await session.execute(query)).scalar_one_or_none()


async def exists_one(
    session: AsyncSession, model: type[OwnedResource], row_id: uuid.UUID, *, owner_id: Owner
) -> bool:
    query = sa.select(sa.exists().where(*_matching(model, row_id, owner_id, None)))
    return bool(await session.scalar(query))


async def update_one(
    session: AsyncSession,
    model: type[M],
    row_id: uuid.UUID,
    *,
    owner_id: Owner,
    versions: Versions,
    values: dict[str, Any],
) -> M | None:
    """Change the row and raise its version in one statement; None if no row matched."""
    statement = (
        sa.update(model)
        .where(*_matching(model, row_id, owner_id, versions))
        .values(**values, version=model.version + 1, updated_at=utc_now())
        .returning(model)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def delete_one(
    session: AsyncSession,
    model: type[OwnedResource],
    row_id: uuid.UUID,
    *,
    owner_id: Owner,
    versions: Versions,
) -> bool:
    """Delete the row in one statement; False if no row matched."""
    statement = (
        sa.delete(model)
        .where(*_matching(model, row_id, owner_id, versions))
        .returning(model.id)
        .execution_options(synchronize_session=False)
    )
    return (await session.execute(statement)).first() is not None
