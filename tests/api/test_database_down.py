"""A database that cannot be reached: liveness holds, readiness and API calls answer 503."""

from collections.abc import Callable
from typing import Any

from app.config import Settings

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
