"""Async engine and session factory, built in the lifespan (after the worker forks)."""

import asyncio
import time
from typing import Any
from weakref import WeakKeyDictionary

import structlog
from sqlalchemy import event, exc, text
from sqlalchemy.engine import Dialect, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, Pool, PoolProxiedConnection
from sqlalchemy.sql.expression import UpdateBase

from app.config import Settings

DEFAULT_STATEMENT_CACHE_SIZE = 100  # asyncpg's and SQLAlchemy's own default
# A connection refused for a reason that is not an outage: authorization (28), unknown database
# (3D), bad parameter (22, 42), and protocol violation (08P01: PgBouncer's refusals).
REFUSED_CLASSES = frozenset({"28", "3D", "22", "42"})
REPEAT = 60.0  # seconds before the same refusal is logged again
# A prepared statement missing or already there: caches kept through a transaction pooler.
PREPARED_STATEMENT_SQLSTATES = frozenset({"26000", "42P05"})
# What PgBouncer answers to the startup parameters Keel sends a plain server.
POOLER_REFUSAL = "unsupported startup parameter"
POOLER_HINT = "DATABASE_URL is a transaction pooler? Set DATABASE_POOLER=transaction"

logger = structlog.get_logger("app.database")


def create_engine(
    settings: Settings, *, direct: bool = False, probe_for: AsyncEngine | None = None
) -> AsyncEngine:
    """An engine on DATABASE_URL, or with `direct` on DATABASE_DIRECT_URL (migrations, locks,
    LISTEN): pooled PostgreSQL with timeouts, or SQLite with foreign keys on.

    With `probe_for` (the requests' engine): the health checks' own single connection, so a
    pool busy with requests never delays them (CONTRACT.md 3); its refusals are reported with
    the requests' engine's, once.
    """
    url = make_url(settings.database_direct_url if direct else settings.database_url)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": 15}, hide_parameters=True)
        event.listen(engine.sync_engine, "connect", _sqlite_on_connect)
        return engine
    # DATABASE_POOLER describes DATABASE_URL; a separate DATABASE_DIRECT_URL is a plain server.
    pooled = settings.DATABASE_POOLER == "transaction" and url == make_url(settings.database_url)
    size = (1, 0) if probe_for else (settings.DATABASE_POOL_SIZE, settings.DATABASE_MAX_OVERFLOW)
    engine = create_async_engine(
        url,
        pool_size=size[0],
        max_overflow=size[1],
        pool_timeout=settings.DATABASE_POOL_TIMEOUT_SECONDS,
        # No ping per checkout (three round trips with asyncpg): _replace_closed finds, for free,
        # the connections a restarted server or pooler closed; one that dies silently (a lost
        # network) fails its query, answered 503, and SQLAlchemy drops the whole stale pool.
        pool_pre_ping=False,
        pool_recycle=1800,
        hide_parameters=True,  # a failing statement's log line keeps no address or token hash
        connect_args=connect_args(settings, pooled=pooled),
    )
    shared = _REPORTERS.get(probe_for.sync_engine.pool) if probe_for else None
    reporter = shared or _ErrorReporter(pooled=pooled)
    _REPORTERS[engine.sync_engine.pool] = reporter
    event.listen(engine.sync_engine, "do_connect", reporter.do_connect)
    event.listen(engine.sync_engine, "handle_error", reporter.handle_error)
    event.listen(engine.sync_engine, "handle_error", _timeout_as_operational_error)
    event.listen(engine.sync_engine, "checkout", _replace_closed)
    return engine


def _replace_closed(
    dbapi_connection: Any, _record: ConnectionPoolEntry, _proxy: PoolProxiedConnection
) -> None:
    """Pessimistic disconnect handling without a round trip. A PgBouncer or PostgreSQL that
    restarts closes the pool's idle connections; asyncpg reads that end of stream while the event
    loop waits, so the connection already knows it is closed when a request checks it out. The
    pool then opens a new one for that request (SQLAlchemy: "If you raise a DisconnectionError,
    the current connection will be disposed and a fresh connection retrieved") instead of
    failing it with a 503 (drill 10)."""
    if dbapi_connection.driver_connection.is_closed():
        raise exc.DisconnectionError("closed by the server or pooler while in the pool")


def create_migration_engine(settings: Settings) -> AsyncEngine:
    """One connection on DATABASE_DIRECT_URL without a statement timeout: a migration may take
    long (with the pooler's prepared-statement mode when DATABASE_DIRECT_URL is unset)."""
    url = make_url(settings.database_direct_url)
    pooled = settings.DATABASE_POOLER == "transaction" and settings.DATABASE_DIRECT_URL is None
    args = _statement_caches(settings, pooled=pooled) if url.get_backend_name() != "sqlite" else {}
    return create_async_engine(url, poolclass=NullPool, connect_args=args, hide_parameters=True)


def _statement_caches(settings: Settings, *, pooled: bool) -> dict[str, int]:
    size = settings.DATABASE_STATEMENT_CACHE_SIZE
    if size is None:
        size = 0 if pooled else DEFAULT_STATEMENT_CACHE_SIZE
    # Both at 0: asyncpg (>= 0.29) runs unnamed statements, so nothing outlives a transaction
    # on a server connection that a transaction pooler hands to the next client.
    return {
        "statement_cache_size": size,  # asyncpg's
        "prepared_statement_cache_size": size,  # SQLAlchemy's, in front of asyncpg's
    }


def connect_args(settings: Settings, *, pooled: bool) -> dict[str, Any]:
    """asyncpg's connection arguments, directly to PostgreSQL or through a transaction pooler."""
    timeout_ms = settings.DATABASE_STATEMENT_TIMEOUT_MS
    args: dict[str, Any] = {
        "timeout": settings.DATABASE_POOL_TIMEOUT_SECONDS,  # TCP connect + auth
        **_statement_caches(settings, pooled=pooled),
        "server_settings": {"application_name": settings.PROJECT_NAME.lower()},
    }
    if pooled:
        # A pooler refuses a statement_timeout startup parameter (and a SET would outlive us on
        # a shared server connection): the driver keeps the time and cancels the statement.
        args["command_timeout"] = timeout_ms / 1000
    else:
        args["command_timeout"] = timeout_ms / 1000 + 1  # client-side backstop
        args["server_settings"] |= {
            "statement_timeout": str(timeout_ms),
            "idle_in_transaction_session_timeout": str(max(timeout_ms * 2, 10_000)),
        }
    return args


def refused_sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE of a connection refused for a reason that is not an outage, if any."""
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    sqlstate = getattr(original, "sqlstate", None)
    if isinstance(sqlstate, str) and (sqlstate[:2] in REFUSED_CLASSES or sqlstate == "08P01"):
        return sqlstate
    return None


class _ErrorReporter:
    """Logs what the database or pooler said, at most once a minute per reason and engine."""

    def __init__(self, *, pooled: bool) -> None:
        self._pooled = pooled  # DATABASE_POOLER=transaction: no hint to set it
        self._refusals: dict[str, float] = {}  # reason -> when it was last logged
        self._prepared_statement_reported = False

    def do_connect(
        self,
        dialect: Dialect,
        _record: ConnectionPoolEntry,
        cargs: tuple[Any, ...],
        cparams: dict[str, Any],
    ) -> Any:
        # asyncpg raises OSErrors (refused, DNS, timeout) as they are: OperationalError here.
        try:
            return dialect.connect(*cargs, **cparams)
        except OSError as error:
            message = f"cannot connect to the database: {error!r}"
            raise dialect.loaded_dbapi.OperationalError(message) from error
        except Exception as error:
            sqlstate = getattr(error, "sqlstate", None)  # the server or pooler answered: no
            reason, now = str(error), time.monotonic()
            if isinstance(sqlstate, str) and now - self._refusals.get(reason, -REPEAT) >= REPEAT:
                self._refusals[reason] = now
                extra: dict[str, str] = {}
                if not self._pooled and POOLER_REFUSAL in reason:  # the line names the fix
                    extra["hint"] = POOLER_HINT
                logger.error(
                    "database_connection_refused", sqlstate=sqlstate, reason=reason, **extra
                )
            raise

    def handle_error(self, context: ExceptionContext) -> None:
        self.statement_failed(context.original_exception)

    def statement_failed(self, error: BaseException) -> None:
        sqlstate = getattr(error, "sqlstate", None)
        if sqlstate in PREPARED_STATEMENT_SQLSTATES and not self._prepared_statement_reported:
            self._prepared_statement_reported = True
            logger.error(
                "database_prepared_statement_lost",
                sqlstate=sqlstate,
                reason=str(error),
                hint=POOLER_HINT,
            )


# By pool: an engine's execution_options() copies (the read engine) share it.
_REPORTERS: WeakKeyDictionary[Pool, _ErrorReporter] = WeakKeyDictionary()


def report_statement_error(connection: AsyncConnection, error: BaseException) -> None:
    """`handle_error`'s report, for a statement run on the driver itself (see driver.py)."""
    reporter = _REPORTERS.get(connection.sync_engine.pool)
    if reporter is not None:
        reporter.statement_failed(error)


def _timeout_as_operational_error(context: ExceptionContext) -> BaseException | None:
    """asyncpg's `command_timeout` is a bare TimeoutError: an OperationalError (503) here."""
    error = context.original_exception
    if context.sqlalchemy_exception is not None or not isinstance(error, TimeoutError):
        return None
    # The server never answered: the connection's state is unknown, so it is dropped (alone).
    context.is_disconnect = True
    context.invalidate_pool_on_disconnect = False
    return exc.OperationalError(context.statement, context.parameters, error)


def _sqlite_on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # Foreign keys (and so ON DELETE CASCADE) are enforced only when asked, per connection.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for requests that write, one transaction each."""
    # expire_on_commit=False: responses are serialized after the commit without reloading rows.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


class ReadOnlyError(RuntimeError):
    """A write through a read-only connection or session: a bug in the endpoint."""


def create_read_engine(engine: AsyncEngine) -> AsyncEngine:
    """The same pool in autocommit, for requests that only read; any INSERT/UPDATE/DELETE raises.

    A request that only reads gains nothing from BEGIN ... COMMIT around its queries but two
    round trips; its statements each see a consistent snapshot of their own.
    """
    read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    event.listen(read_engine.sync_engine, "before_execute", _refuse_writes)  # this copy only
    return read_engine


def _refuse_writes(_connection: Any, statement: Any, *_: Any) -> None:
    if isinstance(statement, UpdateBase):  # INSERT, UPDATE, DELETE, from Core or an ORM flush
        raise ReadOnlyError("a read-only connection cannot write; use SessionDep")


# ORM sessions on a request's read connection (`read_sessions(bind=connection)`).
read_sessions = async_sessionmaker(expire_on_commit=False, autoflush=False)


async def ping(engine: AsyncEngine, within: float) -> float:
    """Run `SELECT 1` within `within` seconds; return the latency in ms or raise."""
    started = time.perf_counter()
    async with asyncio.timeout(within), engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return (time.perf_counter() - started) * 1000
