"""Keel's benchmark: the real production stack against the framework-free ceiling, with wrk.

    make bench                      # or: .venv/bin/python bench/bench.py [options]
    .venv/bin/python bench/bench.py --duration 3 --rounds 1 --memory-duration 5   # a quick look

Starts Keel as production runs it (Gunicorn, 2 Uvicorn workers, PostgreSQL database
`keel_bench`, Redis db 5, access log on at INFO) and, when ../shared/bench is there, the ceiling
app (uvicorn, 2 workers, database `ceiling`, Redis db 6). Seeds 100 users and 10,000 items,
drives both with wrk in interleaved rounds, checks issue 9's targets and writes
docs/benchmarks.md + docs/benchmarks.png. Needs wrk (`apt-get install -y wrk`), PostgreSQL and
Redis. Every process it starts is stopped on the way out, Ctrl-C included. Exit status: 0, or 1
with --strict when a target fails, 2 when something it needs is missing.

--pgbouncer also starts Debian's PgBouncer (transaction mode, 20 server connections) in front of
the same database and a second Keel behind it (DATABASE_POOLER=transaction), measured on the
list in the same interleaved rounds: its row, and its ratio to the direct Keel, join the report.

The overload section (issue 29; benchlib/overload.py) starts one more Keel and loads the list
with `--overload-connections` (1,000) for `--overload-duration` (30 s), wrk honouring
`Retry-After`, a probe client timing its own list and health requests beside it.
`--overload` runs that section alone and prints it (no ceiling, no docs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.metadata
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import asyncpg
import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.pgbouncer

from benchlib import ceiling as ceiling_app
from benchlib import keel, overload, report
from benchlib.processes import (
    ProcessGroups,
    Server,
    child_pids,
    free_port,
    rss_mb,
    wait_idle,
)
from benchlib.report import Report, RouteRow
from benchlib.wrk import Load, WrkResult, WrkRun, combine, run_wrk

from tests.pgbouncer import ThrowawayPgBouncer

ROOT = Path(__file__).resolve().parents[1]
LIST, LIVE, ITEMS, ME, TOKEN = (
    "/api/v1/items?limit=20",
    "/health/live",
    "/api/v1/items",
    "/api/v1/users/me",
    "/api/v1/auth/token",
)
LABELS = {
    "list": f"GET {LIST}",
    "live": f"GET {LIVE}",
    "create": f"POST {ITEMS}",
    "me": f"GET {ME}",
    "login": f"POST {TOKEN}",
}
# Issue 9's targets; /health/live's lowered to 0.25 by issue 18 (the price of a plain edge).
LIST_RATIO, LIVE_RATIO = 0.40, 0.25
PACED_P99_MS, STORM_LIVE_P99_MS = 20.0, 50.0
RSS_MAX_MB, RSS_MAX_GROWTH, COLD_START_MAX_S = 150.0, 0.05, 3.0
POOLED = "keel-pgbouncer"  # Keel behind PgBouncer (--pgbouncer)
POOLED_LABEL = f"GET {LIST} via PgBouncer"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per route")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of unrecorded load")
    parser.add_argument("--memory-duration", type=float, default=30.0, help="per memory round")
    parser.add_argument(
        "--storm-live-rate", type=float, default=200.0, help="/health/live req/s in the storm"
    )
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="server")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379", help="server")
    parser.add_argument("--keel-database", default="keel_bench", help="dropped and recreated")
    parser.add_argument("--keel-redis-db", type=int, default=5)
    parser.add_argument("--ceiling-redis-db", type=int, default=6)
    parser.add_argument("--no-ceiling", action="store_true", help="measure Keel alone")
    parser.add_argument(
        "--pgbouncer", action="store_true", help="also the list through PgBouncer (transaction)"
    )
    parser.add_argument(
        "--gunicorn-args",
        default="",
        help="GUNICORN_CMD_ARGS for Keel, to try a setting (e.g. '--max-requests 0'); "
        "default: gunicorn.conf.py as production runs it",
    )
    parser.add_argument("--docs-dir", type=Path, default=ROOT / "docs")
    parser.add_argument("--no-docs", action="store_true", help="print only; write no files")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument(
        "--overload", action="store_true", help="only the overload section, printed (no docs)"
    )
    parser.add_argument("--overload-connections", type=int, default=1000, help="wrk -c")
    parser.add_argument("--overload-duration", type=float, default=30.0, help="seconds")
    return parser.parse_args(argv)


class Clock:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def say(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f}s] {message}", flush=True)


def sized(load: Load, args: argparse.Namespace) -> Load:
    """`load` with the run's wrk threads, connections and duration."""
    return replace(
        load, threads=args.threads, connections=args.connections, duration_s=args.duration
    )


@dataclass
class Subject:
    """One server under load: its name, where it is, and the bearer token its list uses."""

    name: str
    server: Server
    token: str

    def load(
        self,
        route: str,
        args: argparse.Namespace,
        *,
        duration_s: float | None = None,
        rate: float | None = None,
    ) -> Load:
        auth = {"Authorization": f"Bearer {self.token}"}
        base = {"list": Load(LIST, headers=auth), "live": Load(LIVE)}[route]
        load = sized(base, args)
        return replace(load, duration_s=duration_s or load.duration_s, rate=rate)


@dataclass
class Runs:
    """Every recorded wrk result, by (route, server)."""

    results: dict[tuple[str, str], list[WrkResult]] = field(default_factory=dict)

    def add(self, route: str, server: str, result: WrkResult) -> None:
        self.results.setdefault((route, server), []).append(result)

    def combined(self, route: str, server: str) -> WrkResult | None:
        found = self.results.get((route, server))
        return combine(found) if found else None


def measure(server: Server, load: Load) -> WrkResult:
    """One recorded wrk run, started once the server has finished the previous run's work."""
    wait_idle(server.proc.pid)
    return run_wrk(load, server.base_url)


def describe(result: WrkResult) -> str:
    return (
        f"{result.rps:>9,.0f} req/s  p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms"
        f"  errors {result.errors} (socket {result.socket_errors}, status>=400 "
        f"{result.status_errors})"
    )


def signal_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through `finally`: every server gets stopped


# --- set-up ----------------------------------------------------------------------------------


def machine_facts(pg_server: str, redis_version: str) -> dict[str, str]:
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in (
            "fastapi",
            "starlette",
            "pydantic",
            "sqlalchemy",
            "asyncpg",
            "uvicorn",
            "gunicorn",
            "uvicorn-worker",
        )
    )
    return {
        "CPU": f"{cpu_model}; {os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable",
        "load average at start": loadavg(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "Keel commit": commit.stdout.strip() or "unknown",
        "Keel stack": versions,
        "wrk": (wrk_version.stdout or wrk_version.stderr).splitlines()[0].strip(),
        "PostgreSQL": asyncio.run(_pg_version(pg_server)),
        "Redis": redis_version,
    }


async def _pg_version(pg_server: str) -> str:
    conn = await asyncpg.connect(f"{pg_server}/postgres")
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def prepare_ceiling(args: argparse.Namespace, clock: Clock) -> ceiling_app.Ceiling | None:
    bench_dir = None if args.no_ceiling else ceiling_app.find_bench_dir(ROOT)
    if bench_dir is None:
        clock.say("no ../shared/bench: measuring Keel alone, ratios are n/a")
        return None
    ceiling = ceiling_app.Ceiling(
        bench_dir, f"{args.pg}/ceiling", f"{args.redis}/{args.ceiling_redis_db}"
    )
    clock.say(f"ceiling at {bench_dir}; virtualenv {ceiling_app.VENV} ...")
    try:
        clock.say(f"  virtualenv {ceiling_app.ensure_venv(bench_dir)}")
        keel.flush_redis_db(ceiling.redis_url)
        clock.say(f"  {ceiling_app.seed(ceiling)}")
    except subprocess.CalledProcessError as exc:
        clock.say(f"the ceiling could not be set up ({exc}): measuring Keel alone")
        return None
    return ceiling


def check_status(server: Server, load: Load, expected: int) -> None:
    """One request as wrk will send it: a wrong status (a 3xx too) stops the run early."""
    response = httpx.request(
        load.method,
        server.base_url + load.path,
        headers=dict(load.headers),
        content=load.body,
        timeout=30,
    )
    if response.status_code != expected:
        raise SystemExit(
            f"{server.name} {load.method} {load.path}: expected {expected}, got "
            f"{response.status_code}: {response.text[:300]}"
        )


# --- phases ----------------------------------------------------------------------------------


def interleaved(
    args: argparse.Namespace,
    clock: Clock,
    subjects: Sequence[Subject],
    runs: Runs,
    watch: Callable[[], str],
) -> None:
    """list and live, each round Keel then ceiling (the order flips every round)."""
    for n in range(1, args.rounds + 1):
        order = subjects if n % 2 else list(reversed(subjects))
        for route in ("list", "live"):
            for subject in order:
                if route == "live" and subject.name == POOLED:
                    continue  # touches no database: the pooler changes nothing there
                result = measure(subject.server, subject.load(route, args))
                recycled = watch() if subject.name == "keel" else ""
                runs.add(route, subject.name, result)
                clock.say(f"round {n} {route:<6} {subject.name:<8} {describe(result)}{recycled}")


def keel_only_loads(args: argparse.Namespace, writer_token: str) -> dict[str, Load]:
    auth = {"Authorization": f"Bearer {writer_token}"}
    json_body = '{"title": "bench item", "description": "written by wrk"}'
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    loads = {
        "create": Load(ITEMS, "POST", {**auth, "Content-Type": "application/json"}, json_body),
        "me": Load(ME, headers=auth),
        "login": Load(TOKEN, "POST", form, keel.login_form(2)),
    }
    return {name: sized(load, args) for name, load in loads.items()}


def storm(keel_server: Server, args: argparse.Namespace) -> tuple[WrkResult, WrkResult]:
    """4 connections logging in back to back while a second wrk paces /health/live."""
    login = Load(
        TOKEN,
        "POST",
        {"Content-Type": "application/x-www-form-urlencoded"},
        keel.login_form(3),
        threads=1,
        connections=4,
        duration_s=args.duration + 1,  # outlasts the probe, which starts 0.5 s later
    )
    live = Load(LIVE, threads=1, connections=4, duration_s=args.duration, rate=args.storm_live_rate)
    wait_idle(keel_server.proc.pid)
    login_run = WrkRun(login, keel_server.base_url).start()
    try:
        time.sleep(0.5)  # the storm is raging before the probe starts
        live_result = run_wrk(live, keel_server.base_url)
    except BaseException:
        login_run.kill()
        raise
    return live_result, login_run.finish()


def memory_rounds(
    groups: ProcessGroups,
    config: keel.KeelConfig,
    args: argparse.Namespace,
    clock: Clock,
    port: int,
) -> tuple[list[dict[int, float]], float]:
    """Three list rounds on a fresh Keel whose workers are never recycled; RSS after each."""
    # max_requests (1,000,000 + jitter) could replace the workers mid-test, and a leak check needs
    # the same processes in rounds 2 and 3: the only setting changed from production.
    server, cold = keel.start_keel(
        groups,
        config,
        port,
        name="keel-memory",
        extra_gunicorn_args=f"{args.gunicorn_args} --max-requests 0".strip(),
    )
    clock.say(f"keel (memory instance, --max-requests 0) ready in {cold:.2f} s")
    token = keel.login(server.base_url, 0)
    target = Subject("keel", server, token)
    samples: list[dict[int, float]] = []
    for n in range(1, 4):
        result = measure(server, target.load("list", args, duration_s=args.memory_duration))
        rss = {pid: rss_mb(pid) for pid in child_pids(server.proc.pid)}
        samples.append(rss)
        mb = ", ".join(f"pid {pid} {value:.1f} MB" for pid, value in sorted(rss.items()))
        clock.say(f"memory round {n}: {describe(result)}; RSS {mb}")
    groups.stop(server)
    return samples, cold


def overload_run(
    args: argparse.Namespace, groups: ProcessGroups, config: keel.KeelConfig, clock: Clock
) -> overload.Overload:
    """A fresh Keel: warm-up, the list at --connections, then far past them with the probes."""
    server, _ = keel.start_keel(
        groups, config, free_port(), name="keel-overload", extra_gunicorn_args=args.gunicorn_args
    )
    target = Subject("keel", server, keel.login(server.base_url, 0))
    if args.warmup > 0:
        run_wrk(target.load("list", args, duration_s=args.warmup), server.base_url)
    wait_idle(server.proc.pid)
    clock.say(
        f"overload: the list at {args.connections}, then {args.overload_connections} "
        f"connections for {args.overload_duration:g} s (load average {loadavg()})"
    )
    result = overload.measure(
        server.base_url,
        target.load("list", args),
        target.token,
        args.overload_connections,
        args.overload_duration,
    )
    groups.stop(server)
    for line in result.lines():
        clock.say(line)
    return result


def run_overload_only(args: argparse.Namespace, groups: ProcessGroups, log_dir: Path) -> int:
    clock = Clock()
    config = keel.KeelConfig(
        ROOT, args.pg, args.keel_database, f"{args.redis}/{args.keel_redis_db}", log_dir
    )
    load_at_start = loadavg()
    keel.flush_redis_db(config.redis_url)
    items = keel.prepare_database(config)
    clock.say(f"keel database {config.database}: migrated, {keel.USERS} users, {items} items")
    result = overload_run(args, groups, config, clock)
    print()
    for target in result.targets():
        print(target.line())
    print(f"load average at start {load_at_start}, at end {loadavg()}")
    failed = any(t.ok is False for t in result.targets())
    return 1 if failed and args.strict else 0


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Stack:
    """What is running: Keel, maybe the ceiling, and the loads aimed at them."""

    keel: Subject
    cold_start: float
    subjects: list[Subject]
    keel_only: dict[str, Load]
    ceiling_server: Server | None


def start_stack(
    args: argparse.Namespace,
    groups: ProcessGroups,
    config: keel.KeelConfig,
    ceiling: ceiling_app.Ceiling | None,
    clock: Clock,
    *,
    pooler: ThrowawayPgBouncer | None = None,
) -> Stack:
    items = keel.prepare_database(config)
    clock.say(f"keel database {config.database}: migrated, {keel.USERS} users, {items} items")
    server, cold_start = keel.start_keel(
        groups, config, free_port(), extra_gunicorn_args=args.gunicorn_args
    )
    clock.say(f"keel (gunicorn, 2 workers) on {server.base_url}: ready in {cold_start:.2f} s")
    subjects = [Subject("keel", server, keel.login(server.base_url, 0))]
    ceiling_server = None
    if ceiling is not None:
        ceiling_server = ceiling_app.start(groups, ceiling, free_port(), config.log_dir)
        clock.say(f"ceiling (uvicorn, 2 workers) on {ceiling_server.base_url}")
        subjects.append(Subject("ceiling", ceiling_server, ceiling_app.mint_token(ceiling)))
    if pooler is not None:
        pooled_env = {
            "DATABASE_URL": pooler.url(config.database),
            "DATABASE_POOLER": "transaction",
            "DATABASE_DIRECT_URL": config.database_url,
        }
        pooled, _ = keel.start_keel(groups, config, free_port(), name=POOLED, extra_env=pooled_env)
        clock.say(f"keel behind pgbouncer (port {pooler.port}) on {pooled.base_url}")
        subjects.append(Subject(POOLED, pooled, keel.login(pooled.base_url, 0)))
    # User 1 writes the items, so user 0's list keeps its 100 items the whole run.
    keel_only = keel_only_loads(args, keel.login(server.base_url, 1))
    for subject in subjects:
        check_status(subject.server, subject.load("list", args), 200)
        if subject.name != POOLED:
            check_status(subject.server, subject.load("live", args), 200)
    for name, expected in (("create", 201), ("me", 200), ("login", 200)):
        check_status(server, keel_only[name], expected)
    return Stack(subjects[0], cold_start, subjects, keel_only, ceiling_server)


class WorkerWatch:
    """Gunicorn worker pids seen so far: more than WORKERS means max_requests recycled some."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.seen: set[int] = set(child_pids(master))

    def __call__(self) -> str:
        """Notes the current workers; returns how many are new since the last call, as text."""
        before = len(self.seen)
        self.seen.update(child_pids(self.master))
        new = len(self.seen) - before
        return f"  [{new} worker(s) recycled]" if new else ""

    @property
    def recycled(self) -> int:
        return max(0, len(self.seen) - 2)


@dataclass
class Measured:
    runs: Runs
    paced: WrkResult
    paced_rate: float
    storm_live: WrkResult
    storm_login: WrkResult
    recycled: int


def measure_throughput(
    args: argparse.Namespace, groups: ProcessGroups, stack: Stack, clock: Clock
) -> Measured:
    keel_server = stack.keel.server
    watch = WorkerWatch(keel_server.proc.pid)
    if args.warmup > 0:
        for subject in stack.subjects:
            for route in ("list", "live") if subject.name != POOLED else ("list",):
                load = subject.load(route, args, duration_s=args.warmup)
                run_wrk(load, subject.server.base_url)
        clock.say(f"warmed up ({args.warmup:g} s per server and route)")
    runs = Runs()
    interleaved(args, clock, stack.subjects, runs, watch)
    for n in range(1, args.rounds + 1):
        for name, load in stack.keel_only.items():
            result = measure(keel_server, load)
            recycled = watch()
            runs.add(name, "keel", result)
            clock.say(f"round {n} {name:<6} keel     {describe(result)}{recycled}")
    if stack.ceiling_server is not None:
        groups.stop(stack.ceiling_server)  # idle from here on; it holds database connections
    for subject in stack.subjects:
        if subject.name == POOLED:
            groups.stop(subject.server)

    keel_list = runs.combined("list", "keel")
    assert keel_list is not None
    half = keel_list.rps / 2
    paced = measure(keel_server, stack.keel.load("list", args, rate=half))
    clock.say(f"paced list (asked {half:,.0f} req/s): {describe(paced)}{watch()}")
    storm_live, storm_login = storm(keel_server, args)
    clock.say(f"storm: live  {describe(storm_live)}{watch()}")
    clock.say(f"storm: login {describe(storm_login)}")
    groups.stop(keel_server)
    return Measured(runs, paced, half, storm_live, storm_login, watch.recycled)


def build_report(
    args: argparse.Namespace,
    *,
    date: str,
    machine: dict[str, str],
    stack: Stack,
    measured: Measured,
    memory: tuple[list[dict[int, float]], float],
    load_at_start: float,
    overloaded: overload.Overload,
) -> Report:
    runs = measured.runs
    rows = [
        RouteRow(LABELS[route], combined, runs.combined(route, "ceiling"))
        for route in ("list", "live", "create", "me", "login")
        if (combined := runs.combined(route, "keel")) is not None
    ]
    pooled = runs.combined("list", POOLED)
    if pooled is not None:  # last: the targets below read the rows above by position
        rows.append(RouteRow(POOLED_LABEL, pooled))
    with_ceiling = stack.ceiling_server is not None
    rss_rounds, memory_cold = memory
    return Report(
        date=date,
        settings=(
            f"wrk -t{args.threads} -c{args.connections}, {args.rounds} round(s) x "
            f"{args.duration:g} s per route and server, {args.warmup:g} s warm-up, memory "
            f"rounds 3 x {args.memory_duration:g} s"
            + (
                f"; Keel with GUNICORN_CMD_ARGS={args.gunicorn_args!r}"
                if args.gunicorn_args
                else ""
            )
        ),
        machine={**machine, "load average at end": loadavg()},
        rows=rows,
        targets=[
            report.ratio_target(
                "list throughput vs ceiling", rows[0] if with_ceiling else None, LIST_RATIO
            ),
            report.ratio_target(
                "/health/live throughput vs ceiling", rows[1] if with_ceiling else None, LIVE_RATIO
            ),
            report.paced_p99_target(measured.paced, measured.paced_rate, PACED_P99_MS),
            report.storm_target(measured.storm_live, measured.storm_login, STORM_LIVE_P99_MS),
            *report.memory_targets(rss_rounds, RSS_MAX_MB, RSS_MAX_GROWTH),
            report.cold_start_target(stack.cold_start, COLD_START_MAX_S),
            *overloaded.targets(),
        ],
        details=[
            *([note] if (note := busy_note(load_at_start)) else []),
            *details(args, measured.recycled, memory_cold, with_ceiling),
            *([pooled_note(runs)] if pooled is not None else []),
            *overloaded.lines(),
        ],
    )


def pooled_note(runs: Runs) -> str:
    """The list through PgBouncer against the direct one, round by round (each pair ran back
    to back, so a slow spell of the machine weighs on both)."""
    pairs = zip(runs.results[("list", "keel")], runs.results[("list", POOLED)], strict=True)
    ratios = [pooled.rps / direct.rps for direct, pooled in pairs]
    each = ", ".join(f"{ratio:.0%}" for ratio in ratios)
    return (
        f"Through PgBouncer: the list at {statistics.median(ratios):.0%} of the direct Keel's "
        f"rate (median of the rounds' ratios: {each}): Debian's PgBouncer in transaction mode, "
        "20 server connections, in front of the same database; that Keel runs with "
        "`DATABASE_POOLER=transaction` (unnamed prepared statements, the driver's statement "
        "timeout)."
    )


def busy_note(load_at_start: float) -> str | None:
    """A warning when other work was already loading the machine (figures then mean little)."""
    cpus = len(os.sched_getaffinity(0))
    if load_at_start <= cpus / 2:
        return None
    return (
        f"WARNING: the load average was {load_at_start:.2f} on {cpus} CPUs when this run "
        "started: other work skewed these figures; rerun on a quiet machine."
    )


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(args: argparse.Namespace, groups: ProcessGroups, log_dir: Path) -> int:
    clock = Clock()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    config = keel.KeelConfig(
        ROOT, args.pg, args.keel_database, f"{args.redis}/{args.keel_redis_db}", log_dir
    )
    if (ROOT / ".env").exists():
        clock.say("note: .env exists; Keel reads from it every setting this harness leaves unset")
    load_at_start = os.getloadavg()[0]
    if note := busy_note(load_at_start):
        clock.say(note)
    try:
        machine = machine_facts(args.pg, keel.flush_redis_db(config.redis_url))
    except (OSError, redis.RedisError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL ({args.pg}) and Redis ({args.redis}) must be up: {exc}", file=sys.stderr)
        return 2
    ceiling = prepare_ceiling(args, clock)
    with contextlib.ExitStack() as pooling:
        pooler = None
        if args.pgbouncer:
            pooler = pooling.enter_context(
                ThrowawayPgBouncer(config.database_url, default_pool_size=20)
            )
        stack = start_stack(args, groups, config, ceiling, clock, pooler=pooler)
        measured = measure_throughput(args, groups, stack, clock)
    memory = memory_rounds(groups, config, args, clock, free_port())
    overloaded = overload_run(args, groups, config, clock)
    result = build_report(
        args,
        date=date,
        machine=machine,
        stack=stack,
        measured=measured,
        memory=memory,
        load_at_start=load_at_start,
        overloaded=overloaded,
    )

    print()
    print(report.format_table(result.rows))
    print()
    if ("list", POOLED) in measured.runs.results:
        print(pooled_note(measured.runs))
    for target in result.targets:
        print(target.line())
    if note := busy_note(load_at_start):
        print(note)
    if not args.no_docs:
        write_docs(result, args.docs_dir)
        clock.say(f"wrote {args.docs_dir / 'benchmarks.md'} and benchmarks.png")
    failed = any(t.ok is False for t in result.targets)
    return 1 if failed and args.strict else 0


def details(
    args: argparse.Namespace, recycled: int, memory_cold: float, with_ceiling: bool
) -> list[str]:
    return [
        "Keel: `gunicorn -c gunicorn.conf.py app.main:app`, `ENVIRONMENT=production`, "
        "`WORKERS=2`, PostgreSQL database `keel_bench` (dropped, migrated with "
        "`python -m app migrate`, seeded: 100 users with Argon2id hashes, 100 items each), "
        "Redis db 5, `RATE_LIMIT_REQUESTS`/`AUTH_RATE_LIMIT_REQUESTS` = 10^9 (the limiter runs, "
        "never refuses), `LOG_LEVEL=INFO`, JSON logs (access log included) written to a file.",
        "Ceiling: `../shared/bench` exactly as its README runs it (uvicorn, 2 workers, uvloop, "
        "httptools, no access log), database `ceiling`, Redis db 6."
        if with_ceiling
        else "Ceiling: not found (`../shared/bench`), so no ratios in this run.",
        f"Throughput rows: wrk `-t{args.threads} -c{args.connections} -d{args.duration:g}s`; "
        "list and live alternate Keel and ceiling within each round (the order flips every "
        "round); then `POST /api/v1/items` (user 1, JSON body), `GET /api/v1/users/me` and "
        "`POST /api/v1/auth/token` (form body) on Keel alone. The list is user 0's "
        "(100 items, page of 20, bearer token from the real login). Each recorded run starts "
        "once the server's processes use under 10% of a core (e.g. queued logins worked off).",
        f"Gunicorn's `max_requests` (1,000,000 + jitter) recycled {recycled} worker(s) during "
        "the Keel runs above: that is production behaviour and part of the figures.",
        "List p99 at half of max: wrk with a Lua `delay()` that paces each thread to half of "
        "the list's median rate above (Debian has no wrk2); the achieved rate is shown. wrk "
        "times each request from when it is written, so queueing in the client is not counted "
        "(no coordinated-omission correction).",
        f"Login storm: `wrk -t1 -c4` on `POST /api/v1/auth/token` back to back, and at the "
        f"same time `wrk -t1 -c4` paced to {args.storm_live_rate:g} req/s on `/health/live`.",
        f"Memory: a second Keel started the same way plus `GUNICORN_CMD_ARGS=--max-requests 0` "
        f"(so rounds 2 and 3 see the same worker processes); 3 rounds of "
        f"{args.memory_duration:g} s on the list; VmRSS of each worker after each round. "
        f"That instance's cold start: {memory_cold:.2f} s.",
        "Cold start: from spawning Gunicorn to the first `GET /health/ready` = 200 "
        "(polled every 20 ms), right after migration.",
    ]


def write_docs(result: Report, docs_dir: Path) -> None:
    docs_dir.mkdir(parents=True, exist_ok=True)
    chart = docs_dir / "benchmarks.png"
    report.draw_chart(result.rows, chart)
    (docs_dir / "benchmarks.md").write_text(report.render_markdown(result, chart.name))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    # Ctrl-C must reach us even when started with SIGINT ignored (e.g. `cmd &` in a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal_exit)
    signal.signal(signal.SIGHUP, signal_exit)
    groups = ProcessGroups()
    with tempfile.TemporaryDirectory(prefix="keel-bench-") as tmp:
        try:
            if args.overload:
                return run_overload_only(args, groups, Path(tmp))
            return run(args, groups, Path(tmp))
        except KeyboardInterrupt:
            print("\ninterrupted: stopping every server started", file=sys.stderr)
            return 130
        finally:
            groups.stop_all()


if __name__ == "__main__":
    raise SystemExit(main())
