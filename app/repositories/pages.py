"""Newest-first pages of any `Record` table, by offset or by keyset after a cursor's position.

A page is one statement: the rows (one more than asked, to know whether a next page exists) and
the total as a scalar subquery beside them. After a cursor, rows are found by `(created_at, id)`
through the index on those columns, so a deep page costs what the first one does. Statements
take their values as bound parameters, so a repository builds each one once, at import.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncConnection

from app.models.base import Record
from app.repositories.driver import DriverQuery

# The count's label beside the rows: not a name a resource's own column would take (`total`,
# say, on orders).
TOTAL = "keel_page_total"


class Position(NamedTuple):
    """Where a keyset page starts: after the row with this `(created_at, id)`."""

    created_at: datetime
    id: uuid.UUID


class PageRows(NamedTuple):
    rows: Sequence[Any]
    total: int
    has_more: bool


class PageStatements(NamedTuple):
    by_offset: DriverQuery  # pages are the hottest reads: asyncpg directly on PostgreSQL
    by_keyset: DriverQuery
    count_all: sa.Select[Any]


def statements(model: type[Record], *columns: Any, scope: ColumnElement[bool]) -> PageStatements:
    """The statements of a page of `columns` (default: all the table's) within `scope`.

    Plain columns rather than ORM entities by default: a page is only read and serialized, and
    skipping the identity map and instance construction is most of such a query's CPU cost.

    Bound parameters: `limit`, `offset`, `after_created_at`, `after_id`, and the scope's own.
    """
    total = sa.select(sa.func.count()).select_from(model).where(scope)
    selected = columns or tuple(sa.inspect(model).local_table.columns)
    page = sa.select(*selected, total.scalar_subquery().label(TOTAL)).where(scope)
    after = sa.tuple_(
        sa.bindparam("after_created_at", type_=model.created_at.type),
        sa.bindparam("after_id", type_=model.id.type),
    )
    by_keyset = page.where(sa.tuple_(model.created_at, model.id) < after)
    order = (model.created_at.desc(), model.id.desc())
    limit = sa.bindparam("limit", type_=sa.Integer)
    offset = sa.bindparam("offset", type_=sa.Integer)
    return PageStatements(
        DriverQuery(page.order_by(*order).limit(limit).offset(offset)),
        DriverQuery(by_keyset.order_by(*order).limit(limit)),
        total,
    )


async def fetch(
    connection: AsyncConnection,
    statements: PageStatements,
    *,
    limit: int,
    offset: int,
    after: Position | None,
    **scope: Any,
) -> PageRows:
    """One page; only a page past the end, which has no row to read it from, counts apart."""
    values: dict[str, Any] = {**scope, "limit": limit + 1}
    if after is None:
        query, values["offset"] = statements.by_offset, offset
    else:
        query = statements.by_keyset
        values.update(after_created_at=after.created_at, after_id=after.id)
    rows = await query.fetch(connection, values)
    if rows:
        return PageRows(rows[:limit], getattr(rows[0], TOTAL), len(rows) > limit)
    total = await connection.scalar(statements.count_all, scope)
    return PageRows([], total or 0, False)
