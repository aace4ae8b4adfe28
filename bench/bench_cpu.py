"""Keel trees and the ceiling under the same load, interleaved: req/s, ratio, CPU per request.

    .venv/bin/python bench/bench_cpu.py after=. before=/tmp/keel-main [--rounds 4 --duration 5]
    .venv/bin/python bench/bench_cpu.py fixed=.:DATABASE_MAX_OVERFLOW=0 default=.

Each subject is NAME=PATH[:VAR=VALUE,...]: a Keel checkout (its own code, this virtualenv) run
as `make bench` runs it (Gunicorn, 2 workers, seeded database), with extra settings. The ceiling
from ../shared/bench runs beside them unless --no-ceiling. Every round loads each server in turn
(the order flips every round), so a ratio is taken within one round: on a shared machine whose
speed drifts, that is the figure to compare. Per request it prints the server's CPU (master and
workers), PostgreSQL's (every server process, those that exited included: other work on the same
server leaks in) and Redis's, and how many PostgreSQL connections were opened during the run.
Needs wrk, PostgreSQL and Redis on this machine (their CPU is read from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import ceiling as ceiling_app
from benchlib import keel
from benchlib.processes import ProcessGroups, Server, child_pids, cpu_seconds, free_port, wait_idle
from benchlib.wrk import Load, run_wrk

ROUTES = {"list": "/api/v1/items?limit=20", "live": "/health/live"}
CPU_FIELDS = ("app_us", "pg_us", "redis_us")


@dataclass
class Subject:
    name: str
    server: Server
    token: str
    rows: dict[str, list[Row]] = field(default_factory=dict)


@dataclass(frozen=True)
class Row:
    rps: float
    app_us: float
    pg_us: float
    redis_us: float
    connections: int


class Probes:
    """CPU seconds of PostgreSQL and Redis so far, and connections PostgreSQL has accepted."""

    def __init__(
        self, pg: str, database: str, redis_url: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.loop, self.database = loop, database
        self.conn = loop.run_until_complete(asyncpg.connect(f"{pg}/postgres"))
        backend = loop.run_until_complete(self.conn.fetchval("SELECT pg_backend_pid()"))
        self.postmaster = _parent(backend)  # the servers are on this machine: their pids are ours
        client = redis.Redis.from_url(redis_url)
        info: dict[str, object] = client.info("server")  # type: ignore[assignment]
        self.redis = int(str(info["process_id"]))
        client.close()

    def postgres(self) -> float:
        fields = _stat(self.postmaster)
        reaped = sum(int(value) for value in fields[13:17]) / os.sysconf("SC_CLK_TCK")
        return reaped + cpu_seconds(child_pids(self.postmaster))

    def sessions(self) -> int:
        query = "SELECT sessions FROM pg_stat_database WHERE datname = $1"
        return int(self.loop.run_until_complete(self.conn.fetchval(query, self.database)) or 0)


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _parent(pid: int) -> int:
    return int(_stat(pid)[1])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("subjects", nargs="+", help="NAME=PATH[:VAR=VALUE,...]")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="wrk -c")
    parser.add_argument("--routes", default="list,live", help="of: " + ",".join(ROUTES))
    parser.add_argument("--no-ceiling", action="store_true")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379")
    parser.add_argument("--database", default="keel_bench_cpu", help="Keel's; dropped first")
    parser.add_argument("--ceiling-database", default="ceiling")
    parser.add_argument("--redis-db", type=int, default=7, help="flushed first; both use it")
    return parser.parse_args()


def start(args: argparse.Namespace, groups: ProcessGroups, log_dir: Path) -> list[Subject]:
    redis_url = f"{args.redis}/{args.redis_db}"
    keel.flush_redis_db(redis_url)
    subjects = []
    for n, spec in enumerate(args.subjects):
        name, _, rest = spec.partition("=")
        path, _, settings = rest.partition(":")
        config = keel.KeelConfig(Path(path).resolve(), args.pg, args.database, redis_url, log_dir)
        if n == 0:
            keel.prepare_database(config)
        extra = dict(pair.split("=", 1) for pair in settings.split(",") if pair)
        server, _ = keel.start_keel(groups, config, free_port(), name=name, extra_env=extra)
        subjects.append(Subject(name, server, keel.login(server.base_url, 0)))
        print(f"{name}: {config.root} {extra or ''}", flush=True)
    if not args.no_ceiling:
        bench_dir = ceiling_app.find_bench_dir(Path(__file__).resolve().parents[1])
        if bench_dir is None:
            raise SystemExit("no ../shared/bench: use --no-ceiling")
        ceiling = ceiling_app.Ceiling(bench_dir, f"{args.pg}/{args.ceiling_database}", redis_url)
        ceiling_app.ensure_venv(bench_dir)
        ceiling_app.seed(ceiling)
        server = ceiling_app.start(groups, ceiling, free_port(), log_dir)
        subjects.append(Subject("ceiling", server, ceiling_app.mint_token(ceiling)))
    return subjects


def load(route: str, subject: Subject, args: argparse.Namespace, seconds: float) -> Load:
    headers = {"Authorization": f"Bearer {subject.token}"} if route == "list" else {}
    return Load(ROUTES[route], headers=headers, connections=args.connections, duration_s=seconds)


def measure(subject: Subject, route: str, args: argparse.Namespace, probes: Probes) -> Row:
    wait_idle(subject.server.proc.pid)
    pids = [subject.server.proc.pid, *child_pids(subject.server.proc.pid)]
    before = cpu_seconds(pids), probes.postgres(), cpu_seconds([probes.redis]), probes.sessions()
    result = run_wrk(load(route, subject, args, args.duration), subject.server.base_url)
    after = cpu_seconds(pids), probes.postgres(), cpu_seconds([probes.redis]), probes.sessions()
    if result.errors:
        raise SystemExit(f"{subject.name} {route}: {result.errors} errors: not a throughput")
    per = 1e6 / max(result.requests, 1)
    app, pg, red = ((after[i] - before[i]) * per for i in range(3))
    return Row(result.rps, app, pg, red, after[3] - before[3])


def report(subjects: list[Subject], routes: list[str]) -> None:
    ceiling = next((s for s in subjects if s.name == "ceiling"), None)
    print()
    for route in routes:
        for subject in subjects:
            rows = subject.rows[route]
            rps = statistics.mean(r.rps for r in rows)
            app, pg, red = (statistics.median(getattr(r, f) for r in rows) for f in CPU_FIELDS)
            opened = sum(r.connections for r in rows)
            print(
                f"{route:<5} {subject.name:<10} {rps:8,.0f} req/s  CPU per request (medians): "
                f"app {app:6,.0f} µs, PostgreSQL {pg:5,.0f} µs, Redis {red:4,.0f} µs; "
                f"{opened} new PostgreSQL connections"
            )
            if ceiling is not None and subject is not ceiling:
                ratios = [r.rps / c.rps for r, c in zip(rows, ceiling.rows[route], strict=True)]
                each = " ".join(f"{ratio:.3f}" for ratio in ratios)
                mean = statistics.mean(ratios)
                print(f"      ratio to the ceiling, per round {each}; mean {mean:.3f}")


def main() -> int:
    args = parse_args()
    routes = args.routes.split(",")
    groups = ProcessGroups()
    loop = asyncio.new_event_loop()
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / "keel-bench-cpu"  # noqa: S108
    log_dir.mkdir(exist_ok=True)
    try:
        subjects = start(args, groups, log_dir)
        probes = Probes(args.pg, args.database, f"{args.redis}/{args.redis_db}", loop)
        for subject in subjects:  # warm up: connections opened, code paths run
            for route in routes:
                run_wrk(load(route, subject, args, 2.0), subject.server.base_url)
        for n in range(args.rounds):
            order = subjects if n % 2 == 0 else subjects[::-1]
            for route in routes:
                for subject in order:
                    row = measure(subject, route, args, probes)
                    subject.rows.setdefault(route, []).append(row)
                    print(
                        f"round {n + 1} {route:<5} {subject.name:<10} {row.rps:8,.0f} req/s  app "
                        f"{row.app_us:6,.0f} µs  PostgreSQL {row.pg_us:5,.0f} µs  Redis "
                        f"{row.redis_us:4,.0f} µs  +{row.connections} connections  load "
                        f"{os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        report(subjects, routes)
    finally:
        groups.stop_all()
        loop.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
