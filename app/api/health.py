"""Liveness, readiness and a detailed health report; root level, no auth, never rate limited."""

import asyncio
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel

from app.core import database
from app.core.exceptions import ErrorResponse, error_envelope

READY_TIMEOUT_SECONDS = 2.0

router = APIRouter(prefix="/health", tags=["health"])


class Alive(BaseModel):
    status: Literal["alive"] = "alive"


class Ready(BaseModel):
    status: Literal["ready"] = "ready"


class NotReady(ErrorResponse):
    """The error envelope, with the status field the other probe answers carry."""

    status: Literal["not_ready"] = "not_ready"


class Check(BaseModel):
    status: Literal["ok", "error", "disabled"]
    latency_ms: float | None = None


class HealthChecks(BaseModel):
    database: Check
    redis: Check


class HealthStatus(BaseModel):
    status: Literal["healthy", "degraded"]
    timestamp: AwareDatetime
    version: str
    checks: HealthChecks


@router.get("/live", response_model=Alive)
async def live() -> Alive:
    """The process is up and its event loop answers; touches no database and no Redis."""
    return Alive()


@router.get("/ready", response_model=Ready, responses={503: {"model": NotReady}})
async def ready(request: Request) -> Ready | JSONResponse:
    """Ready for traffic: not draining, and the database answers `SELECT 1` within 2 s.

    On the probes' own connection: a pool busy with slow requests is not a reason to leave the
    Service while the database answers (CONTRACT.md 3).
    """
    details = None
    if request.app.state.draining:
        details = {"reason": "draining"}
    else:
        try:
            await database.ping(request.app.state.probe_engine, READY_TIMEOUT_SECONDS)
        except Exception as error:  # unreachable, timed out or refusing: not ready either way
            details = {"reason": "database"}
            sqlstate = database.refused_sqlstate(error)
            if sqlstate is not None:  # a configuration or authentication problem: say so
                details = {"reason": "database_refused", "sqlstate": sqlstate}
    if details is None:
        return Ready()
    envelope = error_envelope(503, "Service not ready", details)
    return JSONResponse(NotReady(**dict(envelope)).model_dump(mode="json"), status_code=503)


@router.get("", response_model=HealthStatus)
async def health(request: Request) -> HealthStatus:
    """Every dependency's state and latency; `degraded` when one of them fails."""
    db_check, redis_check = await asyncio.gather(_check_database(request), _check_redis(request))
    healthy = db_check.status == "ok" and redis_check.status != "error"
    return HealthStatus(
        status="healthy" if healthy else "degraded",
        timestamp=datetime.now(UTC),
        version=request.app.state.settings.VERSION,
        checks=HealthChecks(database=db_check, redis=redis_check),
    )


async def _check_database(request: Request) -> Check:
    try:
        latency = await database.ping(request.app.state.probe_engine, READY_TIMEOUT_SECONDS)
    except Exception:
        return Check(status="error")
    return Check(status="ok", latency_ms=round(latency, 2))


async def _check_redis(request: Request) -> Check:
    ping = getattr(request.app.state, "redis_ping", None)
    if ping is None:
        return Check(status="disabled")
    try:
        latency: float = await ping(READY_TIMEOUT_SECONDS)
    except Exception:
        return Check(status="error")
    return Check(status="ok", latency_ms=round(latency, 2))
