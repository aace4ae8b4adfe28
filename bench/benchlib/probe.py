"""The overload run's probe client, as a process of its own: `python -m benchlib.probe`.

It sends one list request every 50 ms and `/health/live` + `/health/ready` every 200 ms, each on
schedule (never waiting for the previous answer), and prints every answer's kind, status and
milliseconds as JSON. It stands for a client on another machine, so its own CPU must not slow
what it measures: HTTP/1.1 with h11 over asyncio streams (a fraction of an HTTP client's cost
per request), in a process raised above the server's priority when the OS allows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import h11

LIST_EVERY_S, PROBES_EVERY_S = 0.05, 0.2
TIMEOUT_S = 10.0
PRIORITY = -10  # nice value: above the server and wrk (0), as a client on its own machine is
TRANSPORT_ERROR = 0  # the status recorded for no answer at all


@dataclass
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    http: h11.Connection


class Client:
    """Keep-alive connections to one server, opened as needed and reused when free."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[Connection] = []

    async def get(self, target: str, headers: dict[str, str]) -> int:
        connection = self.idle.pop() if self.idle else await self.open()
        http = connection.http
        host = f"{self.host}:{self.port}"
        request = h11.Request(
            method="GET", target=target, headers=[("host", host), *headers.items()]
        )
        connection.writer.write(http.send(request) + http.send(h11.EndOfMessage()))
        status = TRANSPORT_ERROR
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                data = await connection.reader.read(65536)
                http.receive_data(data)  # b"" tells h11 the server closed the connection
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
            self.idle.append(connection)
        else:
            connection.writer.close()
        return status

    async def open(self) -> Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        return Connection(reader, writer, h11.Connection(h11.CLIENT))


async def probe(base_url: str, token: str, list_path: str, seconds: float) -> list[list[object]]:
    url = urlsplit(base_url)
    client = Client(url.hostname or "127.0.0.1", url.port or 80)
    auth = {"authorization": f"Bearer {token}"}
    answers: list[list[object]] = []

    async def one(kind: str, path: str, headers: dict[str, str]) -> None:
        started = time.perf_counter()
        try:
            status = await asyncio.wait_for(client.get(path, headers), TIMEOUT_S)
        except (OSError, TimeoutError, h11.ProtocolError):
            status = TRANSPORT_ERROR
        answers.append([kind, status, (time.perf_counter() - started) * 1000])

    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    tick = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        tasks.append(asyncio.create_task(one("list", list_path, auth)))
        if tick % round(PROBES_EVERY_S / LIST_EVERY_S) == 0:
            tasks.append(asyncio.create_task(one("live", "/health/live", {})))
            tasks.append(asyncio.create_task(one("ready", "/health/ready", {})))
        tick += 1
        await asyncio.sleep(max(0.0, tick * LIST_EVERY_S - elapsed))
    await asyncio.gather(*tasks)
    return answers


def raise_priority() -> bool:
    """Run above the server's priority; False where the OS does not allow it (not root)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)
    except PermissionError:
        return False
    return True


def main() -> None:
    base_url, token, list_path, seconds = sys.argv[1:5]
    raised = raise_priority()
    answers = asyncio.run(probe(base_url, token, list_path, float(seconds)))
    json.dump({"raised_priority": raised, "answers": answers}, sys.stdout)


if __name__ == "__main__":
    main()
