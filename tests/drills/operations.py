"""Drills of what an operator does to a live Keel (docs/runbook.md): 10 PgBouncer replaced under
load, 11 backup and restore with the runbook's own commands. Same `DrillResult` lines as the
drills of tests/drills/harness.py."""

import asyncio
import os
import re
import shlex
import signal
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

from app import migrations
from tests.drills import harness
from tests.drills.harness import DrillResult, Session, Stack
from tests.drills.load import API, PASSWORD, Record
from tests.ops.gunicorn_process import REPO_ROOT
from tests.pgbouncer import ThrowawayPgBouncer, pgbouncer_binary

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"
BACKUP_TOOLS = ("pg_dump", "createdb", "pg_restore")


def pooled_env(stack: Stack, pooler: ThrowawayPgBouncer) -> dict[str, str]:
    """Keel through PgBouncer as deploy/k8s runs it (DATABASE_POOLER=transaction)."""
    return {
        "DATABASE_URL": pooler.url(),
        "DATABASE_POOLER": "transaction",
        "DATABASE_DIRECT_URL": stack.postgres.url,
    }


async def pgbouncer_restart_drill(
    stack: Stack, *, warmup: float = 2.0, quiet: float = 0.5, after: float = 3.0
) -> DrillResult:
    """PgBouncer replaced twice, as a rollout replaces its pod: a successor takes new
    connections on the same address (both listen with `so_reuseport`, as two pods behind the
    Service), then the old one gets SIGINT, the pod's preStop signal, and closes every
    connection Keel's pools hold to it. First between two bursts of load (the pools sit on
    closed connections when the load comes back), then under steady load. No request that
    starts once the old one is gone may fail; the requests whose query reaches the old one
    during its shutdown are counted (PgBouncer 1.18 pauses them, then closes them)."""
    result = DrillResult("10 pgbouncer-restart")
    if pgbouncer_binary() is None:
        result.check(False, "pgbouncer is not installed (apt-get install -y pgbouncer)")
        return result
    with ExitStack() as cleanup:
        pooler = cleanup.enter_context(_pgbouncer(stack))
        server = cleanup.enter_context(harness.keel(stack, **pooled_env(stack, pooler)))

        async def replace() -> tuple[float, float]:
            nonlocal pooler
            successor = cleanup.enter_context(_pgbouncer(stack, port=pooler.port))
            signalled = session.now()
            await asyncio.to_thread(pooler.stop, signal.SIGINT)
            pooler = successor
            return signalled, session.now()

        async with Session(server, ("/health/ready",), keepalive=False) as session:
            await asyncio.sleep(warmup)
            await session.load.finish()
            quiet_signalled, quiet_gone = await replace()
            await asyncio.sleep(quiet)
            session.load.start()
            await asyncio.sleep(after)
            signalled, gone = await replace()
            await asyncio.sleep(after)
            await session.load.finish()
    windows = [(quiet_signalled, quiet_gone), (signalled, gone)]

    def during(record: Record) -> bool:  # overlaps a shutdown: the old PgBouncer may answer it
        return any(record.started < end and record.ended > start for start, end in windows)

    api, ready = session.api(), session.recorder.of("ready")
    resumed = [r for r in api if quiet_gone <= r.started < signalled and not during(r)]
    shutdown = [r for r in api if during(r)]
    later = [r for r in api if r.started >= gone]
    not_ready = [r for r in ready if r.status != 200 and not during(r)]
    harness.summarize(result, api)
    result.figures["503_after_quiet_restart"] = quiet_failed = sum(not r.ok for r in resumed)
    result.figures["shutdown_under_load_took"] = gone - signalled
    result.figures["503_during_shutdown"] = sum(not r.ok for r in shutdown)
    result.figures["requests_after"] = len(later)
    result.figures["503_after"] = failed = sum(not r.ok for r in later)
    result.figures["ready_503_outside_shutdown"] = len(not_ready)
    result.check(len(resumed) > 0 and len(later) > 0, "no request after a restart")
    result.check(quiet_failed == 0, f"{quiet_failed} requests failed after the quiet restart")
    result.check(failed == 0, f"{failed} requests failed after the restart under load")
    result.check(not not_ready, "/health/ready failed after a restart")
    harness.check_envelopes(result, api)
    return result


def _pgbouncer(stack: Stack, port: int | None = None) -> ThrowawayPgBouncer:
    # Fewer server connections (8) than the two workers' pools may open (2 x 15).
    return ThrowawayPgBouncer(stack.postgres.url, port=port, default_pool_size=8, so_reuseport=1)


def runbook_backup_commands() -> list[list[str]]:
    """The pg_dump, createdb and pg_restore lines of docs/runbook.md "Backup and restore"."""
    text = RUNBOOK.read_text()
    section = text.split("## Backup and restore", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    if block is None:
        raise ValueError("docs/runbook.md: no sh block under 'Backup and restore'")
    commands = [shlex.split(line) for line in block[1].splitlines()]
    return [command for command in commands if command and command[0] in BACKUP_TOOLS]


def _run(stack: Stack, command: list[str], directory: Path) -> None:
    """A runbook line, with libpq's variables pointing at the drill's PostgreSQL (the runbook
    sets them to DATABASE_DIRECT_URL's server) and the server's own client binaries."""
    env = os.environ | {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(stack.postgres.port),
        "PGUSER": "postgres",
    }
    binary = str(stack.postgres.bin / command[0])
    done = subprocess.run(
        [binary, *command[1:]], cwd=directory, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RunbookCommandError(f"{shlex.join(command)} exited {done.returncode}: {done.stderr}")


async def _listed_ids(client: httpx.AsyncClient, email: str) -> tuple[int, set[str]]:
    """(the login's status, the ids of every item the user lists, page by page)."""
    form = {"username": email, "password": PASSWORD}
    token = await client.post(f"{API}/auth/token", data=form)
    if token.status_code != 200:
        return token.status_code, set()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    ids: set[str] = set()
    params: dict[str, str | int] = {"limit": 100}
    while True:
        page = await client.get(f"{API}/items", params=params, headers=headers)
        page.raise_for_status()
        body = page.json()
        ids |= {item["id"] for item in body["items"]}
        if body["next_cursor"] is None:
            return token.status_code, ids
        params = {"limit": 100, "cursor": body["next_cursor"]}


async def backup_restore_drill(stack: Stack, *, warmup: float = 3.0) -> DrillResult:
    """docs/runbook.md's backup of a Keel under load (pg_dump is one consistent snapshot), its
    restore into a fresh database, the migrations (a no-op at head), and Keel on the restored
    database: each user logs in and lists every item acknowledged before the dump began."""
    result = DrillResult("11 backup-restore")
    commands = runbook_backup_commands()
    if [command[0] for command in commands] != list(BACKUP_TOOLS):
        result.check(False, "docs/runbook.md: not one pg_dump, createdb, pg_restore line each")
        return result
    try:
        await _backup_restore(stack, result, commands, warmup)
    except RunbookCommandError as error:
        result.check(False, str(error))
    return result


class RunbookCommandError(RuntimeError):
    """A line of the runbook failed as written."""


async def _backup_restore(
    stack: Stack, result: DrillResult, commands: list[list[str]], warmup: float
) -> None:
    dump, restore = commands[:1], commands[1:]
    directory = stack.root / "backup"
    directory.mkdir(exist_ok=True)
    with harness.keel(stack) as server:
        async with Session(server, ("/health/live",), keepalive=False) as session:
            await asyncio.sleep(warmup)
            dumped_at = session.now()
            for command in dump:
                await asyncio.to_thread(_run, stack, command, directory)
            dumped = session.now()
            await asyncio.sleep(0.5)  # writes after the snapshot: not expected in the restore
            await session.load.finish()
    api, users = session.api(), session.load.users
    before = {r.item_id for r in api if r.op == "create" and r.ok and r.ended < dumped_at}
    started = time.monotonic()
    for command in restore:
        await asyncio.to_thread(_run, stack, command, directory)
    restored_url = stack.postgres.url.rsplit("/", 1)[0] + "/" + restore[0][-1]  # createdb's
    await asyncio.to_thread(migrations.upgrade, restored_url)
    restore_took = time.monotonic() - started
    listed: dict[str, set[str]] = {}
    logins: list[int] = []
    with harness.keel(stack, DATABASE_URL=restored_url) as restored:
        async with httpx.AsyncClient(base_url=restored.base_url, timeout=15) as client:
            for user in users:
                status, ids = await _listed_ids(client, user.email)
                logins.append(status)
                listed[user.email] = ids
    missing = sum(len((before & set(u.item_ids)) - listed[u.email]) for u in users)
    foreign = sum(len(listed[u.email] - set(u.item_ids)) for u in users)
    harness.summarize(result, api)
    result.figures["dump_took"] = dumped - dumped_at
    result.figures["dump_bytes"] = sum(f.stat().st_size for f in directory.iterdir())
    result.figures["restore_took"] = restore_took
    result.figures["logins_200"] = f"{logins.count(200)}/{len(users)}"
    result.figures["items_before_dump"] = len(before)
    result.figures["items_listed"] = sum(len(ids) for ids in listed.values())
    result.figures["missing"] = missing
    result.figures["foreign"] = foreign
    result.check(len(before) > 0, "no item was written before the dump")
    result.check(logins == [200] * len(users), "a user could not log in on the restore")
    result.check(missing == 0, f"{missing} items acknowledged before the dump are missing")
    result.check(foreign == 0, f"{foreign} listed items were never acknowledged to that user")
    result.check(all(r.ok for r in api), "a request failed during the dump")
