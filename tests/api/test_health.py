from datetime import datetime

import httpx
from fastapi import FastAPI


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
    assert set(body["checks"]["redis"]) == {"status", "latency_ms"}
