"""Resilience drills: CONTRACT.md section 7, proven against the production server under load.

    scripts/drills [--outage 10] [--only 1,3]

Starts a throwaway PostgreSQL cluster (initdb into a temporary directory) and redis-server on
ports of 18300-18399, migrates, runs Keel under Gunicorn (2 workers) and, under steady recorded
load, runs: 1 PostgreSQL stop (fast, then immediate) and return, 2 Redis stop and return,
3 a worker SIGKILLed, 4 SIGTERM to the master, 5 a slow database (statement_timeout, then the
request deadline); and with `python -m app worker` processes and an aiosmtpd SMTP server
(CONTRACT.md section 9): 6 Redis paused during a reset request, 7 a job worker SIGKILLed
mid-send, 8 the API killed between commit and hand-over, 9 the SMTP server refusing; and what
an operator does (docs/runbook.md): 10 PgBouncer replaced under load (Keel behind it with
DATABASE_POOLER=transaction), 11 backup and restore with the runbook's commands.
One line of figures per drill; exit status 1 when any bound was broken.
Everything started is stopped and removed at the end, on failure and on Ctrl-C too.
"""

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

from tests.drills import harness, jobs, operations
from tests.drills.harness import DrillResult, Stack


async def run(stack: Stack, outage: float, only: set[str]) -> list[DrillResult]:
    results: list[DrillResult] = []

    def report(result: DrillResult) -> None:
        results.append(result)
        print(result.line(), flush=True)

    if only & {"1", "2", "3", "4"}:
        with harness.keel(stack) as server:
            if "1" in only:
                for mode in ("fast", "immediate"):
                    report(await harness.postgres_drill(stack, server, mode=mode, outage=outage))
            if "2" in only:
                report(await harness.redis_drill(stack, server, outage=outage))
            if "3" in only:
                report(await harness.worker_kill_drill(server))
            if "4" in only:
                report(await harness.sigterm_drill(server))
    if "5" in only:
        # statement_timeout (1 s) fires before the request deadline (3 s) ...
        with harness.keel(
            stack, DATABASE_STATEMENT_TIMEOUT_MS="1000", REQUEST_TIMEOUT_SECONDS="3"
        ) as server:
            report(await harness.slow_database_drill(stack, server, deadline=3.0))
        # ... and the deadline (1.5 s) before statement_timeout (the default, 5 s).
        with harness.keel(stack, REQUEST_TIMEOUT_SECONDS="1.5") as server:
            report(
                await harness.slow_database_drill(
                    stack, server, deadline=1.5, name="5 slow-db-deadline"
                )
            )
    if "6" in only:
        report(await jobs.redis_paused_drill(stack, pause=outage))
    if "7" in only:
        report(await jobs.worker_killed_drill(stack))
    if "8" in only:
        report(await jobs.api_killed_drill(stack))
    if "9" in only:
        for code in (451, 550):
            report(await jobs.smtp_refusing_drill(stack, code))
    await _operator_drills(stack, only, report)
    return results


async def _operator_drills(
    stack: Stack, only: set[str], report: Callable[[DrillResult], None]
) -> None:
    for number, drill in (
        ("10", operations.pgbouncer_restart_drill),
        ("11", operations.backup_restore_drill),
    ):
        if number in only:
            report(await drill(stack))


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up exactly like Ctrl-C


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=10.0, help="seconds each outage lasts")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8,9,10,11", help="drills, e.g. 1,4")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        with harness.stack() as stack:
            print(
                f"throwaway PostgreSQL {stack.postgres.bin.parent.name} on :{stack.postgres.port},"
                f" redis-server on :{stack.redis.port}; Keel: gunicorn, 2 workers",
                flush=True,
            )
            results = asyncio.run(run(stack, args.outage, set(args.only.split(","))))
    except KeyboardInterrupt:
        print("interrupted: everything started has been stopped", file=sys.stderr)
        return 130
    failed = [result.name for result in results if result.problems]
    took = time.monotonic() - started
    summary = f"{len(results)} drills, {len(failed)} failed ({took:.0f} s)"
    print(summary + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
