"""Shared fixtures: every API test runs on SQLite, on PostgreSQL, and on PostgreSQL through a
real PgBouncer in transaction mode (tests/pgbouncer.py; the API tests only).

PostgreSQL runs when TEST_DATABASE_URL is set (`.ci/run` sets it); if it is set and the server
is unreachable the tests fail, they are never skipped. The PgBouncer leg also needs Debian's
`pgbouncer`: without it that leg is skipped, or fails when REQUIRE_SERVICES=1. Each test gets a
fresh app (real lifespan, real engine, real commits) and the tables are emptied after it.
"""

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import redis
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app import migrations
from app.config import Settings, load_settings
from app.main import create_app
from app.models import Base
from tests.mailbox import Mailbox
from tests.pgbouncer import ThrowawayPgBouncer, pgbouncer_binary

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL")
# CI sets REQUIRE_SERVICES=1: a missing service is then a failure, never a skip.
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"
TEST_SECRET_KEY = "test-secret-key-that-is-long-enough-0123456789"

BACKENDS = [
    "sqlite",
    pytest.param("postgresql", marks=pytest.mark.postgresql),
    pytest.param("pgbouncer", marks=pytest.mark.pgbouncer),
]
# The pooled URLs the PgBouncer leg hands out, each with the direct URL behind it.
POOLED_URLS: dict[str, str] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "postgresql: runs against TEST_DATABASE_URL")
    config.addinivalue_line("markers", "pgbouncer: runs through PgBouncer to TEST_DATABASE_URL")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The PgBouncer leg is the API tests' (tests/api): other tests run on two backends."""
    api = Path(__file__).parent / "api"
    keep, dropped = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("database_url") if callspec else None
        pooled_elsewhere = backend == "pgbouncer" and api not in item.path.parents
        (dropped if pooled_elsewhere else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# What tests needed and this machine lacks, with how to provide it: the run's last line says.
_MISSING: dict[str, str] = {}


def missing(need: str, how: str, *, required: bool = REQUIRE_SERVICES) -> NoReturn:
    """Skip the test for want of `need` (fail instead when it is required, as in CI)."""
    if required:
        pytest.fail(f"required but missing: {need}")
    _MISSING[need] = how
    pytest.skip(f"needs {need} ({how})")


def require_pgbouncer() -> None:
    if pgbouncer_binary() is None:
        missing("pgbouncer", "apt-get install pgbouncer")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any) -> Any:
    """After every other summary (skip reasons, coverage): what was missing, in one line."""
    result = yield
    if _MISSING:
        wanted = "; ".join(f"{need}: {how}" for need, how in _MISSING.items())
        terminalreporter.write_line(f"Skipped for want of {wanted}")
    return result


async def reset_schema(url: str) -> None:
    """Drop whatever a previous run left, then build the schema with the real migrations."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
            else:
                await conn.run_sync(Base.metadata.drop_all)
                await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    finally:
        await engine.dispose()
    await asyncio.to_thread(migrations.upgrade, url)


@pytest.fixture(scope="session", params=BACKENDS)
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'keel.db'}"
    elif TEST_DATABASE_URL:
        url = TEST_DATABASE_URL
    else:
        missing("PostgreSQL", "set TEST_DATABASE_URL=postgresql+asyncpg://…")
    if request.param != "pgbouncer":
        await reset_schema(url)
        return url
    pooler: ThrowawayPgBouncer = request.getfixturevalue("pgbouncer")
    await reset_schema(url)  # directly: migrations go past the pooler, as in production
    POOLED_URLS[pooler.url()] = url
    return pooler.url()


@pytest.fixture(scope="session")
def pgbouncer() -> Iterator[ThrowawayPgBouncer]:
    """PgBouncer in transaction mode before TEST_DATABASE_URL's server, with fewer server
    connections than a test app opens, so that clients share them as in production."""
    require_pgbouncer()
    assert TEST_DATABASE_URL
    with ThrowawayPgBouncer(TEST_DATABASE_URL) as pooler:
        yield pooler


@pytest.fixture(scope="session")
async def _engines() -> AsyncIterator[dict[str, AsyncEngine]]:
    engines: dict[str, AsyncEngine] = {}
    yield engines
    for engine in engines.values():
        await engine.dispose()


@pytest.fixture
def cleanup_engine(database_url: str, _engines: dict[str, AsyncEngine]) -> AsyncEngine:
    """An engine on this test's database (never through the pooler), for setting up and
    checking rows behind the API."""
    direct = POOLED_URLS.get(database_url, database_url)
    if direct not in _engines:
        _engines[direct] = create_async_engine(direct)
    return _engines[direct]


@pytest.fixture
async def _clean_tables(cleanup_engine: AsyncEngine) -> AsyncIterator[None]:
    yield
    async with cleanup_engine.begin() as conn:
        tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
        if conn.dialect.name == "postgresql":
            await conn.execute(text(f"TRUNCATE {tables} CASCADE"))
        else:
            for table in reversed(Base.metadata.sorted_tables):
                await conn.execute(table.delete())


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Settings for a test app; keyword arguments override single variables."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "_env_file": None,
            "ENVIRONMENT": "test",
            "DATABASE_URL": database_url,
            "SECRET_KEY": TEST_SECRET_KEY,
            "RATE_LIMIT_REQUESTS": 1_000_000,
            "AUTH_RATE_LIMIT_REQUESTS": 1_000_000,
            "LOG_FORMAT": "json",
        }
        if database_url in POOLED_URLS:
            values |= {
                "DATABASE_POOLER": "transaction",
                "DATABASE_DIRECT_URL": POOLED_URLS[database_url],
            }
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def make_client(_clean_tables: None) -> Callable[[Settings], "_ClientContext"]:
    """Build an app from settings, run its lifespan, and yield an HTTP client bound to it."""

    def make(settings: Settings) -> "_ClientContext":
        return _ClientContext(create_app(settings))

    return make


class _ClientContext:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        transport = httpx.ASGITransport(
            app=self.app, client=("203.0.113.7", 50000), raise_app_exceptions=False
        )
        self._client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._lifespan.__aexit__(None, None, None)


@pytest.fixture
async def app_client(
    make_client: Callable[[Settings], _ClientContext], settings: Settings
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    context = make_client(settings)
    async with context as client:
        yield context.app, client


@pytest.fixture
def app(app_client: tuple[FastAPI, httpx.AsyncClient]) -> FastAPI:
    return app_client[0]


@pytest.fixture
def client(app_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_client[1]


@pytest.fixture(scope="session")
def redis_url() -> str:
    """TEST_REDIS_URL, checked reachable: skipped when unset, failed when unset and
    REQUIRE_SERVICES=1 or when set but unreachable."""
    if not TEST_REDIS_URL:
        missing("Redis", "set TEST_REDIS_URL=redis://…")
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(f"TEST_REDIS_URL is set but Redis is unreachable: {exc}")
    finally:
        client.close()
    return TEST_REDIS_URL


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on a free port; `mailbox.settings` points Keel at it."""
    box = Mailbox().start()
    yield box
    box.stop()
