"""The real app plus one route that only tests serve: `tests.ops.drain_app:app` under Gunicorn.

`GET /_test/until-draining` holds its request until the worker has received SIGTERM, so the
graceful-shutdown test knows for certain that each request was in flight when the signal
landed. Nothing here is part of `app/`: production never serves this route.
"""

import asyncio
import os

import httpx
from fastapi import Request

from app.core import database
from app.main import create_app

WAIT_LIMIT_SECONDS = 60  # a bound, not an expectation: a stuck test then fails with a body

app = create_app()


@app.get("/_test/until-draining")
async def until_draining(request: Request) -> dict[str, object]:
    """Wait for SIGTERM, then still do real work: a database round trip and a readiness check."""
    state = request.app.state
    async with asyncio.timeout(WAIT_LIMIT_SECONDS):
        while not state.draining:  # noqa: ASYNC110  # set by a signal handler, not an Event
            await asyncio.sleep(0.01)
    await database.ping(state.engine, 5.0)
    # What a load balancer asking this worker now would get (its sockets are already closed).
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        ready = await client.get("/health/ready")
    return {"pid": os.getpid(), "draining": state.draining, "ready_status": ready.status_code}
