"""The hottest reads on PostgreSQL through asyncpg itself, on the request's own connection.

Why: for the authenticated list's two reads (the caller's live session, the page), SQLAlchemy's
per-statement work (execution context, result processing) costs more CPU than
asyncpg's whole query (docs/performance.md). A `DriverQuery` is a Core SELECT compiled once, with
the connection's own dialect, and run with asyncpg's `fetch` on the SQLAlchemy connection it is
given: same SQL, same statement-cache and timeout settings (app/core/database.py), no second
connection. Errors become SQLAlchemy's, as through `connection.execute`, so the 503 / 500
handling is unchanged. Values go to asyncpg as given (no SQLAlchemy type processing): UUIDs,
aware datetimes and numbers, which asyncpg encodes as SQLAlchemy would.

Only PostgreSQL takes this path: on any other database `fetch` runs the same statement through
`connection.execute`. Either way rows are named tuples (`row.id`, `row[0]`) of the selected
columns. With tracing on, each read is a client span like the SQLAlchemy instrumentation's
(which never sees it: it bypasses SQLAlchemy's cursor).
"""

from collections import namedtuple
from collections.abc import Mapping, Sequence
from typing import Any

from asyncpg import InterfaceError, InternalClientError, PostgresError
from opentelemetry.trace import SpanKind
from sqlalchemy import Dialect, Select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from app.core.database import report_statement_error
from app.core.tracing import driver_tracer


class DriverQuery:
    """A SELECT that PostgreSQL runs through asyncpg directly."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        names = statement.selected_columns.keys()
        self._row = namedtuple("Row", names, rename=True)  # type: ignore[misc]  # unlabeled: _0
        self._compiled: tuple[str, tuple[str, ...]] | None = None

    def _sql(self, dialect: Dialect) -> tuple[str, tuple[str, ...]]:
        """The statement's SQL ($1, $2, ...) and its parameter names in that order."""
        if self._compiled is None:
            compiled = self.statement.compile(dialect=dialect)
            self._compiled = str(compiled), tuple(compiled.positiontup or ())
        return self._compiled

    async def fetch(self, connection: AsyncConnection, params: Mapping[str, Any]) -> Sequence[Any]:
        rows: Sequence[Any]
        if connection.dialect.name != "postgresql":
            rows = (await connection.execute(self.statement, params)).all()
            return [self._row(*row) for row in rows]
        sql, names = self._sql(connection.dialect)
        args = [params[name] for name in names]
        tracer = driver_tracer(connection)
        if tracer is None:
            return await self._fetch(connection, sql, args, params)
        attributes = {"db.system": "postgresql", "db.statement": sql}
        database = connection.engine.url.database
        if database:
            attributes["db.name"] = database
        name = f"SELECT {database}" if database else "SELECT"
        with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
            return await self._fetch(connection, sql, args, params)

    async def _fetch(
        self, connection: AsyncConnection, sql: str, args: list[Any], params: Mapping[str, Any]
    ) -> Sequence[Any]:
        rows: Sequence[Any]
        driver: Any = (await connection.get_raw_connection()).driver_connection
        try:
            rows = await driver.fetch(sql, *args)
        except PostgresError as error:  # the server refused it: its SQLSTATE decides 503 or 500
            report_statement_error(connection, error)  # as SQLAlchemy's handle_error hook does
            if driver.is_closed():  # and ended the connection (a restart): as below
                await connection.execute(self.statement, params)
            raise DBAPIError(sql, args, error) from error
        except (InterfaceError, InternalClientError, OSError, TimeoutError) as error:
            if isinstance(error, InterfaceError) and not driver.is_closed():
                raise  # misuse, e.g. a value asyncpg cannot encode: a bug, answered 500
            if driver.is_closed():
                # Lost with the server: SQLAlchemy sees the closed connection as a disconnect and,
                # as on any, drops the whole stale pool (its other connections died too).
                await connection.execute(self.statement, params)
            # Lost, or in an unknown state (after a timeout, or a server that ended it while idle
            # in the pool): never hand it to another request.
            await connection.invalidate(error)
            raise OperationalError(sql, args, error) from error
        return [self._row(*row) for row in rows]
