"""The resilience drills of CONTRACT.md section 7, shared by `scripts/drills` and the CI tests.

A `Stack` is a throwaway PostgreSQL cluster and redis-server; `keel(stack)` runs the production
server (Gunicorn, 2 workers) on them; each `*_drill` coroutine drives recorded load through one
kind of trouble and returns a `DrillResult`: one line of figures, and the contract's bounds it
broke (none, when all is well).
"""

import asyncio
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from app import migrations
from tests.drills.load import Load, Probes, Record, Recorder
from tests.drills.services import PORTS, ThrowawayPostgres, throwaway_redis
from tests.ops.gunicorn_process import Gunicorn, running_gunicorn
from tests.servers import ThrowawayRedis

# CONTRACT.md section 7's bounds.
READY_DOWN_WITHIN = 2.0  # /health/ready answers 503 this soon after the database stops
READY_UP_WITHIN = 5.0  # ... and 200 this soon after it is back
THROUGHPUT_BACK_WITHIN = 5.0  # after a worker is killed
POOL_TIMEOUT_SECONDS = 5.0  # DATABASE_POOL_TIMEOUT_SECONDS (the default) for the drills' server
GRACEFUL_TIMEOUT_SECONDS = 30  # gunicorn.conf.py
NOT_LIMITED = "1000000"  # rate limits so high the limiter runs but never answers 429
API_OPS = ("create", "list", "get", "login")


@dataclass
class DrillResult:
    name: str
    figures: dict[str, object] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def check(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    def line(self) -> str:
        figures = "  ".join(f"{key}={_show(value)}" for key, value in self.figures.items())
        verdict = "ok" if not self.problems else "FAILED: " + "; ".join(self.problems)
        return f"{self.name:<22} {figures}  -> {verdict}"


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}s"
    if value is None:
        return "never"
    return str(value)


@dataclass
class Stack:
    postgres: ThrowawayPostgres
    redis: ThrowawayRedis
    root: Path

    def server_env(self, **extra: str) -> dict[str, str]:
        return {
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "RATE_LIMIT_REQUESTS": NOT_LIMITED,
            "AUTH_RATE_LIMIT_REQUESTS": NOT_LIMITED,
            "DATABASE_POOL_TIMEOUT_SECONDS": str(POOL_TIMEOUT_SECONDS),
            **extra,
        }


@contextmanager
def stack() -> Iterator[Stack]:
    """A migrated throwaway PostgreSQL and a redis-server; both gone afterwards, whatever
    happened (exceptions and Ctrl-C included)."""
    with ExitStack() as cleanup:
        root = Path(tempfile.mkdtemp(prefix="keel-drills-"))
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        postgres = ThrowawayPostgres()
        cleanup.callback(postgres.close)
        postgres.init()
        migrations.upgrade(postgres.url)
        redis = throwaway_redis()
        cleanup.callback(redis.close)
        redis.start()
        yield Stack(postgres, redis, root)


@contextmanager
def keel(stack: Stack, **extra: str) -> Iterator[Gunicorn]:
    """The production server (Dockerfile CMD: Gunicorn, 2 workers) on the stack, until ready."""
    directory = Path(tempfile.mkdtemp(prefix="gunicorn-", dir=stack.root))
    with running_gunicorn(directory, ports=PORTS, **stack.server_env(**extra)) as server:
        yield server


def worker_pids(server: Gunicorn) -> set[int]:
    """The master's children (Linux /proc)."""
    master = server.process.pid
    try:
        children = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        return set()
    return {int(pid) for pid in children.split()}


class Session:
    """Load and probes against one server, on one recorder's clock."""

    def __init__(self, server: Gunicorn, probes: tuple[str, ...], **load: object) -> None:
        self.server = server
        self.recorder = Recorder()
        self.load = Load(server.base_url, self.recorder, **load)  # type: ignore[arg-type]
        self.probes = Probes(server.base_url, self.recorder, probes)

    async def __aenter__(self) -> "Session":
        await self.load.sign_up()
        self.load.start()
        self.probes.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.probes.aclose()
        await self.load.aclose()

    def now(self) -> float:
        return self.recorder.now()

    def api(self) -> list[Record]:
        return self.recorder.of(*API_OPS)


def _first(records: list[Record], after: float, status: int) -> float | None:
    """Seconds from `after` until the first answer with `status` that ended after it."""
    for record in sorted(records, key=lambda r: r.ended):
        if record.ended >= after and record.status == status:
            return max(record.ended - after, 0.0)
    return None


def summarize(result: DrillResult, api: list[Record]) -> None:
    failed = [r for r in api if not r.ok]
    result.figures["requests"] = len(api)
    result.figures["2xx"] = len(api) - len(failed)
    result.figures["503"] = sum(r.is_envelope_503 for r in failed)
    result.figures["other_errors"] = len([r for r in failed if not r.is_envelope_503])


def check_envelopes(result: DrillResult, api: list[Record]) -> None:
    odd = sorted({f"{r.status}:{r.error}" for r in api if not r.ok and not r.is_envelope_503})
    result.check(not odd, f"answers other than 2xx or the 503 envelope: {odd}")


async def lost_writes(stack: Stack, recorder: Recorder) -> tuple[int, int]:
    """(acknowledged writes, how many of them the database does not have)."""
    acknowledged = recorder.acknowledged_ids()
    connection = await stack.postgres.connect()
    try:
        rows = await connection.fetch(
            "SELECT id::text FROM items WHERE id = ANY($1::uuid[])", list(acknowledged)
        )
    finally:
        await connection.close()
    return len(acknowledged), len(acknowledged - {row[0] for row in rows})


async def postgres_drill(
    stack: Stack, server: Gunicorn, *, mode: str = "fast", outage: float = 10.0,
    warmup: float = 3.0, after: float = 6.0,
) -> DrillResult:  # fmt: skip
    """PostgreSQL stops (`pg_ctl stop -m mode`) for `outage` seconds, then returns."""
    result = DrillResult(f"1 postgres-{mode}")
    pids = worker_pids(server)
    async with Session(server, ("/health/live", "/health/ready"), keepalive=False) as session:
        await asyncio.sleep(warmup)
        stopped = session.now()
        await asyncio.to_thread(stack.postgres.stop, mode)
        await asyncio.sleep(max(outage - (session.now() - stopped), 0))
        restarting = session.now()
        await asyncio.to_thread(stack.postgres.start)
        back = session.now()
        await asyncio.sleep(after)
        await session.load.finish()
    recorder, api = session.recorder, session.api()
    live, ready = recorder.of("live"), recorder.of("ready")
    during = [r for r in api if r.ended >= stopped and r.started <= back]
    late = [r for r in api if r.started >= back + READY_UP_WITHIN]
    acknowledged, lost = await lost_writes(stack, recorder)

    result.figures["outage"] = back - stopped
    summarize(result, api)
    result.figures["503_during_outage"] = sum(r.is_envelope_503 for r in during)
    result.figures["live_200"] = f"{sum(r.status == 200 for r in live)}/{len(live)}"
    result.figures["ready_503_after"] = down = _first(ready, stopped, 503)
    result.figures["ready_200_after_return"] = up = _first(ready, back, 200)
    result.figures["slowest_api"] = slowest = max(r.latency for r in api)
    result.figures["api_2xx_after_return"] = _first(api, back, 201) or _first(api, back, 200)
    result.figures["acked_writes"] = acknowledged
    result.figures["lost"] = lost

    result.check(all(r.status == 200 for r in live), "/health/live was not always 200")
    result.check(down is not None and down <= READY_DOWN_WITHIN, "ready not 503 within 2 s")
    result.check(up is not None and up <= READY_UP_WITHIN, "ready not 200 within 5 s of return")
    result.check(
        all(
            r.status == 503
            for r in ready
            if r.started >= stopped + READY_DOWN_WITHIN and r.ended < restarting
        ),
        "ready answered other than 503 during the outage",
    )
    result.check(
        all(r.status == 200 for r in ready if r.started >= back + READY_UP_WITHIN),
        "ready not back to 200 for good",
    )
    check_envelopes(result, api)
    result.check(any(r.is_envelope_503 for r in during), "no API call saw the outage")
    result.check(slowest <= POOL_TIMEOUT_SECONDS + 1, "an API call took over pool timeout + 1 s")
    result.check(bool(late) and all(r.ok for r in late), "API not recovered 5 s after return")
    result.check(worker_pids(server) == pids, "workers were restarted (recovery needs none)")
    result.check(acknowledged > 0 and lost == 0, f"{lost} acknowledged writes lost")
    return result


async def sigterm_drill(server: Gunicorn, *, warmup: float = 3.0) -> DrillResult:
    """SIGTERM to the master under load: every request in flight completes, then the master
    exits 0. As in Kubernetes (readiness fails, the preStop sleep lets the load balancer stop
    sending), the steady load stops first and its last answers arrive; the signal then comes
    while a burst of slow logins is being hashed. (A request still on the wire when the server
    closes an idle keep-alive connection is lost in any HTTP/1.1 server: that is what preStop
    prevents.)"""
    result = DrillResult("4 sigterm")
    async with Session(server, ("/health/live",)) as session:
        await asyncio.sleep(warmup)
        burst = await session.load.slow_logins(4)
        await session.load.finish()
        signalled = session.now()
        server.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*burst)
        exit_code = await asyncio.to_thread(server.process.wait, GRACEFUL_TIMEOUT_SECONDS + 15)
        exited = session.now() - signalled
    api = session.api()
    in_flight = [r for r in api if r.started < signalled < r.ended]
    summarize(result, api)
    result.figures["in_flight_at_sigterm"] = len(in_flight)
    result.figures["failed_in_flight"] = sum(not r.ok for r in in_flight)
    result.figures["exit_code"] = exit_code
    result.figures["exit_after"] = exited
    result.check(len(in_flight) > 0, "no request was in flight at the SIGTERM")
    result.check(all(r.ok for r in api), "a request failed")
    result.check(exit_code == 0, f"master exited {exit_code}")
    result.check(exited <= GRACEFUL_TIMEOUT_SECONDS, "exit took longer than the graceful timeout")
    return result


async def redis_drill(
    stack: Stack, server: Gunicorn, *, outage: float = 10.0, warmup: float = 3.0,
    after: float = 8.0,
) -> DrillResult:  # fmt: skip
    """redis-server stops for `outage` seconds, then returns (empty: no persistence)."""
    result = DrillResult("2 redis")
    log_start = len(server.log_lines())
    async with Session(server, ("/health/live", "/health"), keepalive=False) as session:
        await asyncio.sleep(warmup)
        stopped = session.now()
        await asyncio.to_thread(stack.redis.stop)
        await asyncio.sleep(max(outage - (session.now() - stopped), 0))
        await asyncio.to_thread(stack.redis.start)
        back = session.now()
        await asyncio.sleep(after)
        await session.load.finish()
    api, health = session.api(), session.recorder.of("health")
    events = _log_events(server, log_start)
    fell_back = {pid for event, pid in events if event == "rate_limit_redis_unavailable"}
    recovered = {pid for event, pid in events if event == "rate_limit_redis_recovered"}
    workers = len(worker_pids(server))
    keys = await asyncio.to_thread(stack.redis.key_count)
    degraded = _first_note(health, stopped, "degraded/redis=error")
    healthy = _first_note(health, back, "healthy/redis=ok")
    last = max(health, key=lambda r: r.ended, default=None)

    result.figures["outage"] = back - stopped
    summarize(result, api)
    result.figures["5xx"] = sum(r.status is None or r.status >= 500 for r in api)
    result.figures["429"] = sum(r.status == 429 for r in api)
    result.figures["health_degraded_after"] = degraded
    result.figures["healthy_after_return"] = healthy
    result.figures["fallback_workers"] = f"{len(fell_back)}/{workers}"
    result.figures["back_on_redis_workers"] = f"{len(recovered)}/{workers}"
    result.figures["redis_keys_after"] = keys

    result.check(all(r.ok for r in api), "an API call failed (5xx, 429 or no answer)")
    result.check(degraded is not None, "/health never reported Redis down")
    result.check(healthy is not None, "/health never reported Redis back")
    result.check(last is not None and last.note == "healthy/redis=ok", "/health ends unhealthy")
    result.check(len(fell_back) == workers, "not every worker fell back to in-process limits")
    result.check(len(recovered) == workers, "not every worker went back to Redis")
    result.check(keys > 0, "the limiter wrote nothing to Redis after its return")
    return result


def _first_note(records: list[Record], after: float, note: str) -> float | None:
    for record in sorted(records, key=lambda r: r.ended):
        if record.ended >= after and record.note == note:
            return max(record.ended - after, 0.0)
    return None


def _log_events(server: Gunicorn, skip: int) -> list[tuple[str, int]]:
    """(event, pid) of the server's JSON log lines after the first `skip`."""
    events = []
    for line in server.log_lines()[skip:]:
        with suppress(ValueError):
            entry = json.loads(line)
            events.append((str(entry.get("event")), int(entry.get("pid", 0))))
    return events


async def worker_kill_drill(
    server: Gunicorn, *, warmup: float = 3.0, after: float = 7.0
) -> DrillResult:
    """One worker is SIGKILLed under load; the master replaces it."""
    result = DrillResult("3 worker-sigkill")
    before = worker_pids(server)
    victim = min(before)
    async with Session(server, ("/health/live",)) as session:
        await asyncio.sleep(warmup)
        burst = await session.load.slow_logins(4)
        await asyncio.sleep(0.05)  # sent, and being hashed (on either worker)
        killed = session.now()
        os.kill(victim, signal.SIGKILL)
        gone = replaced = None
        while session.now() - killed < after:
            pids = worker_pids(server)
            if gone is None and victim not in pids:
                gone = session.now()
            if replaced is None and victim not in pids and len(pids) == len(before):
                replaced = session.now() - killed
            await asyncio.sleep(0.01)
        await asyncio.gather(*burst)
        await session.load.finish()
    api = session.api()
    # The victim's requests: in flight at the kill, or sent before the master had reaped it
    # (its sockets die with it; until then they still take requests).
    dying = gone if gone is not None else killed
    exposed = [r for r in api if r.started < dying and r.ended > killed]
    failed = [r for r in api if not r.ok]
    recovered = _throughput_back(api, killed)
    summarize(result, api)
    result.figures["in_flight_at_kill"] = len(exposed)
    result.figures["failed"] = len(failed)
    result.figures["failed_kinds"] = ",".join(sorted({str(r.error) for r in failed})) or "-"
    result.figures["replaced_after"] = replaced
    result.figures["throughput_back_after"] = recovered
    result.check(replaced is not None, "the master did not replace the killed worker")
    result.check(
        all(r.status is None for r in failed), "a request got an HTTP error (only lost ones may)"
    )
    result.check(
        all(any(r is e for e in exposed) for r in failed),
        "a request not in flight to the dying worker failed",
    )
    result.check(
        recovered is not None and recovered <= THROUGHPUT_BACK_WITHIN, "throughput not back in 5 s"
    )
    result.check(worker_pids(server) - before != set(), "no new worker")
    return result


def _throughput_back(api: list[Record], at: float, window: float = 1.0) -> float | None:
    """Seconds after `at` until a `window` of 2xx completions reaches 80% of the rate of the
    2 s before `at`."""
    done = [r.ended for r in api if r.ok]
    baseline = sum(at - 2 <= t < at for t in done) / 2 * window
    step = 0.1
    for n in range(int(20 / step)):
        start = at + n * step
        if sum(start <= t < start + window for t in done) >= 0.8 * baseline:
            return n * step
    return None


async def slow_database_drill(
    stack: Stack, server: Gunicorn, *, deadline: float, hold: float = 6.0, warmup: float = 2.0,
    after: float = 3.0, name: str = "5 slow-database",
) -> DrillResult:  # fmt: skip
    """The items table is locked (ACCESS EXCLUSIVE, from another connection) for `hold`
    seconds: item queries wait until statement_timeout or the request deadline cancels them."""
    result = DrillResult(name)
    async with Session(server, ("/health/live",), keepalive=False) as session:
        await asyncio.sleep(warmup)
        connection = await stack.postgres.connect()
        try:
            transaction = connection.transaction()
            await transaction.start()
            await connection.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
            locked = session.now()
            await asyncio.sleep(hold)
            released = session.now()
            await transaction.rollback()
        finally:
            await connection.close()
        await asyncio.sleep(after)
        await session.load.finish()
    api, live = session.api(), session.recorder.of("live")
    stuck = [r for r in api if r.started >= locked and r.ended <= released]
    live_during = [r for r in live if r.started >= locked and r.ended <= released]
    late = [r for r in api if r.started >= released + 0.5]
    summarize(result, api)
    result.figures["503_while_locked"] = f"{sum(r.is_envelope_503 for r in stuck)}/{len(stuck)}"
    result.figures["slowest_503"] = max((r.latency for r in stuck), default=0.0)
    result.figures["deadline"] = deadline
    result.figures["live_200_while_locked"] = (
        f"{sum(r.status == 200 for r in live_during)}/{len(live_during)}"
    )
    result.figures["slowest_live"] = max((r.latency for r in live_during), default=0.0)
    result.check(bool(stuck) and all(r.is_envelope_503 for r in stuck), "a locked call not 503")
    result.check(all(r.latency <= deadline + 0.5 for r in stuck), "a 503 came after the deadline")
    result.check(
        bool(live_during) and all(r.status == 200 and r.latency < 1 for r in live_during),
        "/health/live stalled while the database was slow",
    )
    result.check(bool(late) and all(r.ok for r in late), "API not back once the lock went")
    check_envelopes(result, api)
    return result
