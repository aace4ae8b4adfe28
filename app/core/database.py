"""Async engine and session factory, built in the lifespan (after the worker forks)."""

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import Dialect, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.pool import ConnectionPoolEntry

from app.config import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine tuned per dialect: pooled PostgreSQL with timeouts, or SQLite with FKs on."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": 15})
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    timeout_ms = settings.DATABASE_STATEMENT_TIMEOUT_MS
    engine = create_async_engine(
        url,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        pool_timeout=settings.DATABASE_POOL_TIMEOUT_SECONDS,
        # No ping on every checkout: asyncpg's costs three round trips (BEGIN, ping, ROLLBACK)
        # per request. A connection that died with the server fails its query instead; that
        # request gets the 503 envelope and SQLAlchemy discards the whole stale pool at once.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={
            "timeout": settings.DATABASE_POOL_TIMEOUT_SECONDS,  # TCP connect + auth
            "command_timeout": timeout_ms / 1000 + 1,  # client-side backstop
            "server_settings": {
                "statement_timeout": str(timeout_ms),
                "idle_in_transaction_session_timeout": str(max(timeout_ms * 2, 10_000)),
                "application_name": settings.PROJECT_NAME.lower(),
            },
        },
    )
    event.listen(engine.sync_engine, "do_connect", _connect_or_operational_error)
    event.listen(engine.sync_engine, "handle_error", _timeout_as_operational_error)
    return engine


# asyncpg raises OSErrors as they are (connection refused, DNS failure, connect timeout) and its
# `command_timeout` as a bare TimeoutError; SQLAlchemy wraps only DBAPI errors, so these two hooks
# turn them into `OperationalError` (a DBAPIError): the 503 envelope, never a 500.


def _connect_or_operational_error(
    dialect: Dialect, _record: ConnectionPoolEntry, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    try:
        return dialect.connect(*cargs, **cparams)
    except OSError as error:
        message = f"cannot connect to the database: {error!r}"
        raise dialect.loaded_dbapi.OperationalError(message) from error


def _timeout_as_operational_error(context: ExceptionContext) -> BaseException | None:
    error = context.original_exception
    if context.sqlalchemy_exception is not None or not isinstance(error, TimeoutError):
        return None
    # The server never answered: the connection's state is unknown, so it is dropped (alone).
    context.is_disconnect = True
    context.invalidate_pool_on_disconnect = False
    return exc.OperationalError(context.statement, context.parameters, error)


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # SQLite enforces foreign keys (and so ON DELETE CASCADE) only when asked, per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


class ReadOnlySessionError(RuntimeError):
    """A write was attempted through a read-only session: a bug in the endpoint."""


class ReadOnlySession(Session):
    """A session that only reads: flushing a change or running INSERT/UPDATE/DELETE raises."""

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        if self.new or self.dirty or self.deleted:
            raise ReadOnlySessionError("a read-only session cannot write; use SessionDep")


@event.listens_for(ReadOnlySession, "do_orm_execute")
def _refuse_writes(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlySessionError("a read-only session cannot write; use SessionDep")


def create_sessionmaker(
    engine: AsyncEngine, *, read_only: bool = False
) -> async_sessionmaker[AsyncSession]:
    """Sessions for requests; `read_only` ones cannot write and run without a transaction.

    A request that only reads gains nothing from BEGIN ... COMMIT around its queries but two
    round trips; its statements each see a consistent snapshot of their own.
    """
    # expire_on_commit=False: responses are serialized after the commit without reloading rows.
    if read_only:
        return async_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT"),
            sync_session_class=ReadOnlySession,
            expire_on_commit=False,
            autoflush=False,
        )
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def ping(engine: AsyncEngine, within: float) -> float:
    """Run `SELECT 1` within `within` seconds; return the latency in ms or raise."""
    started = time.perf_counter()
    async with asyncio.timeout(within), engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return (time.perf_counter() - started) * 1000
