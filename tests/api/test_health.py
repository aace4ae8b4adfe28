import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.config import Settings
from tests.api.conftest import make_account


async def test_live_is_alive(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


async def test_ready_when_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_ready_is_503_while_draining(app: FastAPI, client: httpx.AsyncClient) -> None:
    app.state.draining = True
    response = await client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["error"] == "service_unavailable"
    assert body["details"] == {"reason": "draining"}


async def test_health_reports_checks(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"] == "0.1.0"
    assert datetime.fromisoformat(body["timestamp"]).utcoffset() is not None
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["database"]["latency_ms"] >= 0
    assert body["checks"]["redis"] == {"status": "disabled", "latency_ms": None}  # no REDIS_URL


async def test_health_pings_redis(
    make_settings: Callable[..., Settings], make_client: Any, redis_url: str
) -> None:
    async with make_client(make_settings(REDIS_URL=redis_url)) as client:
        body = (await client.get("/health")).json()
    assert body["status"] == "healthy"
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["redis"]["latency_ms"] >= 0


async def test_health_is_degraded_when_redis_is_unreachable(
    make_settings: Callable[..., Settings], make_client: Any
) -> None:
    settings = make_settings(REDIS_URL="redis://127.0.0.1:9/0")
    async with make_client(settings) as client:
        response = await client.get("/health")
        ready = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["redis"] == {"status": "error", "latency_ms": None}
    assert ready.status_code == 200  # Redis is not a readiness condition


async def test_ready_while_the_requests_pool_is_busy(
    make_settings: Callable[..., Settings],
    make_client: Any,
    database_url: str,
    cleanup_engine: AsyncEngine,
) -> None:
    """The pool's one connection held by a request stuck behind a lock: the database still
    answers, so the pod stays ready (CONTRACT.md 3) and /health says so too."""
    if not database_url.startswith("postgresql"):
        pytest.skip("table locks that make a request wait are PostgreSQL's")
    settings = make_settings(
        PROJECT_NAME="keel-busy", DATABASE_POOL_SIZE=1, DATABASE_MAX_OVERFLOW=0
    )
    async with make_client(settings) as client:
        account = await make_account(client, "busy@example.com")
        async with cleanup_engine.connect() as locker:
            await locker.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
            stuck = asyncio.create_task(client.get("/api/v1/items", headers=account.headers))
            await wait_for_lock_waiters(locker, "keel-busy")
            ready = await client.get("/health/ready")
            health = await client.get("/health")
            assert not stuck.done()  # the pool's only connection was busy throughout
            await locker.rollback()
        assert (await stuck).status_code == 200
    assert ready.status_code == 200, ready.text
    assert health.json()["checks"]["database"]["status"] == "ok"


async def wait_for_lock_waiters(locker: AsyncConnection, application: str) -> None:
    """Until a connection of `application` is waiting for a lock (the request has reached it)."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND application_name = :application"
    )
    for _ in range(500):
        if await locker.scalar(query, {"application": application}):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no connection of {application} ever waited for the lock")
