from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI

from app.config import Settings


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
