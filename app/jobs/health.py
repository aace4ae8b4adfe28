"""The worker's HTTP port: `GET /health/live` for Kubernetes' liveness probe, `GET /metrics`.

Served from the worker's own event loop, so an answer proves the loop is running; liveness also
requires the job receiver to be running. Neither touches the database or Redis (an outage is
not something a restart fixes).
"""

import asyncio
from collections.abc import Callable
from typing import Final

from app.core import metrics

READ_TIMEOUT_SECONDS: Final = 5.0


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def serve_health(
    port: int,
    is_alive: Callable[[], bool],
    host: str = "0.0.0.0",  # noqa: S104 - probed by k8s
) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                request = await reader.readuntil(b"\r\n\r\n")
            method, path, *_ = request.decode("latin-1").split(" ", 2)
            json = "application/json"
            if method != "GET":
                reply = _response("405 Method Not Allowed", b"", json)
            elif path == "/health/live" and is_alive():
                reply = _response("200 OK", b'{"status":"alive"}', json)
            elif path == "/health/live":
                reply = _response("503 Service Unavailable", b'{"status":"not_alive"}', json)
            elif path == "/metrics":
                body, content_type = metrics.render()
                reply = _response("200 OK", body, content_type)
            else:
                reply = _response("404 Not Found", b"", json)
            writer.write(reply)
            await writer.drain()
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, ConnectionError):
            pass  # a probe that hung up or sent nonsense gets nothing
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port)
