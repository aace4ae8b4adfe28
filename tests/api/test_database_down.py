"""A database that cannot be reached: liveness holds, readiness and API calls answer 503."""

import asyncio
import socket
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from tests.api.conftest import make_account

UNREACHABLE = "postgresql+asyncpg://postgres@127.0.0.1:9/nothing"


async def test_database_down(make_settings: Callable[..., Settings], make_client: Any) -> None:
    settings = make_settings(DATABASE_URL=UNREACHABLE, DATABASE_POOL_TIMEOUT_SECONDS=1)
    async with make_client(settings) as client:
        assert (await client.get("/health/live")).status_code == 200
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["details"] == {"reason": "database"}
        health = (await client.get("/health")).json()
        assert health["status"] == "degraded"
        assert health["checks"]["database"] == {"status": "error", "latency_ms": None}


async def test_database_that_never_answers(
    make_settings: Callable[..., Settings], make_client: Any
) -> None:
    """A connect timeout (asyncpg raises a bare TimeoutError) is the 503 envelope, not a 500."""
    with socket.socket() as silent:  # accepts TCP connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{port}/nothing"
        settings = make_settings(DATABASE_URL=url, DATABASE_POOL_TIMEOUT_SECONDS=0.5)
        async with make_client(settings) as client:
            response = await client.post(
                "/api/v1/auth/register", json={"email": "a@example.com", "password": "pass-1234"}
            )
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert response.headers["retry-after"] == "5"


async def test_database_host_unknown(
    make_settings: Callable[..., Settings], make_client: Any
) -> None:
    """A DNS failure (a plain OSError from asyncpg) is the 503 envelope, not a 500."""
    url = "postgresql+asyncpg://postgres@db.invalid:5432/nothing"
    async with make_client(make_settings(DATABASE_URL=url)) as client:
        response = await client.get("/api/v1/items")  # unauthenticated: the session still opens
        registered = await client.post(
            "/api/v1/auth/register", json={"email": "a@example.com", "password": "pass-1234"}
        )
    assert response.status_code == 401
    assert registered.status_code == 503
    assert registered.json()["error"] == "service_unavailable"


async def test_recovers_when_connections_are_killed(
    make_settings: Callable[..., Settings],
    make_client: Any,
    database_url: str,
    cleanup_engine: AsyncEngine,
) -> None:
    """What a PostgreSQL restart does to a pool: every pooled connection dies at once. The next
    requests get new connections, none a 503 (app.core.database._replace_closed)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("terminating server connections is a PostgreSQL notion")
    name = f"keel-restart-{uuid.uuid4().hex[:8]}"
    async with make_client(make_settings(PROJECT_NAME=name)) as client:
        account = await make_account(client, "restart@example.com")
        for _ in range(3):
            assert (await client.get("/api/v1/items", headers=account.headers)).status_code == 200
        async with cleanup_engine.connect() as conn:
            killed = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": name},
            )
        assert killed
        # The event loop reads the servers' end of stream while the pool waits for a request.
        await asyncio.sleep(0.1)
        statuses = [
            (await client.get("/api/v1/items", headers=account.headers)).status_code
            for _ in range(4)
        ]
        assert statuses == [200] * 4
        assert (await client.get("/health/ready")).status_code == 200
