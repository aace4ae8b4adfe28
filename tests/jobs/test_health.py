"""The worker's health port, served in-process: liveness follows the receiver, junk is dropped."""

import asyncio

import httpx

from app.jobs.health import serve_health
from tests import servers
from tests.mailbox import PORTS


async def test_liveness_follows_the_receiver_and_junk_gets_nothing() -> None:
    alive = True
    port = servers.free_port(PORTS)
    server = await serve_health(port, lambda: alive, host="127.0.0.1")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get("/health/live")).status_code == 200
            alive = False
            dead = await client.get("/health/live")
            assert (dead.status_code, dead.json()) == (503, {"status": "not_alive"})
            assert "jobs_queue_depth" in (await client.get("/metrics")).text
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"garbage\r\n\r\n")
        await writer.drain()
        assert await reader.read() == b""  # closed without an answer
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
