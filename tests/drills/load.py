"""Steady, bounded load against a live Keel, and probes of its health endpoints; every request
is recorded (when, what, status, latency, and the id a 2xx write returned)."""

import asyncio
import random
import time
import uuid
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field

import httpx

API = "/api/v1"
PASSWORD = "drill-password-1234"


@dataclass(slots=True)
class Record:
    op: str
    started: float  # seconds since the recorder's origin
    latency: float
    status: int | None  # None: no HTTP answer at all (refused, reset, timed out)
    error: str | None = None  # the envelope's `error`, or the transport exception's name
    item_id: str | None = None  # what a 2xx write returned
    note: str | None = None  # anything else worth keeping (health status, rate-limit counter)

    @property
    def ended(self) -> float:
        return self.started + self.latency

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def is_envelope_503(self) -> bool:
        return self.status == 503 and self.error == "service_unavailable"


@dataclass
class Recorder:
    origin: float = field(default_factory=time.monotonic)
    records: list[Record] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.origin

    def of(self, *ops: str) -> list[Record]:
        return [record for record in self.records if not ops or record.op in ops]

    def acknowledged_ids(self) -> set[str]:
        return {r.item_id for r in self.records if r.ok and r.item_id and r.op == "create"}

    async def timed(
        self, op: str, client: httpx.AsyncClient, method: str, url: str, **kwargs: object
    ) -> tuple[Record, httpx.Response | None]:
        """Send one request and record it, whatever happens."""
        started = self.now()
        try:
            response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as error:
            record = Record(op, started, self.now() - started, None, type(error).__name__)
            self.records.append(record)
            return record, None
        record = Record(op, started, self.now() - started, response.status_code)
        if not record.ok:
            record.error = _error_code(response)
        record.note = response.headers.get("x-ratelimit-remaining")
        self.records.append(record)
        return record, response


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "not-json"
    code = body.get("error") if isinstance(body, dict) else None
    return str(code) if code else "no-envelope"


@dataclass
class User:
    email: str
    headers: dict[str, str]
    item_ids: list[str] = field(default_factory=list)


class Load:
    """`concurrency` loops sharing one keep-alive pool, `rate` requests/s in all, bounded by
    `max_requests` and by whoever sets `stop`. Mix: 40% create, 30% list, 30% get.
    Keep-alive connections stay on the worker that accepted them; without keep-alive the load
    reaches every worker."""

    def __init__(
        self,
        base_url: str,
        recorder: Recorder,
        *,
        concurrency: int = 8,
        rate: float = 80.0,
        max_requests: int = 50_000,
        timeout: float = 15.0,
        keepalive: bool = True,
    ) -> None:
        self.recorder = recorder
        self.concurrency = concurrency
        self.interval = concurrency / rate
        self.max_requests = max_requests
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=timeout,
            # Without keep-alive every request is a new connection, so on either worker.
            limits=httpx.Limits(
                max_connections=concurrency,
                max_keepalive_connections=concurrency if keepalive else 0,
            ),
        )
        # For requests beside the steady loops (a burst of slow logins), never queued behind them.
        self.side = httpx.AsyncClient(base_url=base_url, timeout=timeout)
        self.users: list[User] = []
        self.stop = asyncio.Event()
        self._sent = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def sign_up(self, count: int = 2) -> None:
        for _ in range(count):
            email = f"drill-{uuid.uuid4().hex[:12]}@example.com"
            body = {"email": email, "password": PASSWORD}
            registered = await self.client.post(f"{API}/auth/register", json=body)
            registered.raise_for_status()
            form = {"username": email, "password": PASSWORD}
            token = await self.client.post(f"{API}/auth/token", data=form)
            token.raise_for_status()
            bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
            self.users.append(User(email, bearer))

    def start(self) -> None:
        self.stop.clear()
        self._tasks = [asyncio.create_task(self._loop(n)) for n in range(self.concurrency)]

    async def finish(self) -> None:
        """Stop issuing requests and wait for those in flight."""
        self.stop.set()
        await asyncio.gather(*self._tasks)
        self._tasks = []

    async def aclose(self) -> None:
        self.stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()
        await self.side.aclose()

    async def slow_logins(self, count: int) -> list[asyncio.Task[object]]:
        """Start `count` logins (Argon2: ~0.1 s of CPU each) on already open connections."""
        await asyncio.gather(*(self.side.get("/health/live") for _ in range(count)))
        form = {"username": self.users[0].email, "password": PASSWORD}
        return [
            asyncio.create_task(
                self.recorder.timed("login", self.side, "POST", f"{API}/auth/token", data=form)
            )
            for _ in range(count)
        ]

    async def _loop(self, seed: int) -> None:
        chooser = random.Random(seed)
        await asyncio.sleep(self.interval * seed / self.concurrency)  # spread the loops out
        while not self.stop.is_set() and self._sent < self.max_requests:
            self._sent += 1
            began = time.monotonic()
            await self._one(chooser)
            pause = self.interval - (time.monotonic() - began)
            if pause > 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), pause)

    async def _one(self, chooser: random.Random) -> None:
        user = chooser.choice(self.users)
        roll = chooser.random()
        if roll < 0.4 or not user.item_ids:
            title = f"drill {uuid.uuid4().hex[:8]}"
            record, response = await self.recorder.timed(
                "create", self.client, "POST", f"{API}/items", json={"title": title},
                headers=user.headers,
            )  # fmt: skip
            if response is not None and record.ok:
                record.item_id = response.json()["id"]
                user.item_ids.append(record.item_id)
        elif roll < 0.7:
            await self.recorder.timed(
                "list", self.client, "GET", f"{API}/items?limit=20", headers=user.headers
            )
        else:
            item_id = chooser.choice(user.item_ids)
            await self.recorder.timed(
                "get", self.client, "GET", f"{API}/items/{item_id}", headers=user.headers
            )


class Probes:
    """Polls health endpoints every `every` seconds, each on a fresh connection (so on any
    worker), recording op `live`, `ready` or `health` (with `note` = overall/redis status)."""

    def __init__(
        self,
        base_url: str,
        recorder: Recorder,
        paths: Iterable[str] = ("/health/live", "/health/ready"),
        every: float = 0.1,
    ) -> None:
        self.recorder = recorder
        self.paths = list(paths)
        self.every = every
        limits = httpx.Limits(max_keepalive_connections=0)
        self.client = httpx.AsyncClient(base_url=base_url, timeout=5.0, limits=limits)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.client.aclose()

    async def _loop(self) -> None:
        while True:
            await asyncio.gather(*(self._probe(path) for path in self.paths))
            await asyncio.sleep(self.every)

    async def _probe(self, path: str) -> None:
        op = path.rstrip("/").rpartition("/")[2]
        record, response = await self.recorder.timed(op, self.client, "GET", path)
        if op == "health" and response is not None and response.status_code == 200:
            body = response.json()
            record.note = f"{body['status']}/redis={body['checks']['redis']['status']}"
