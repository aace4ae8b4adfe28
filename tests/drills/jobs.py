"""The background-job drills of CONTRACT.md section 9, shared by `scripts/drills` (6-9) and the
CI tests: the production server (Gunicorn, 2 workers) and real `python -m app worker`
processes on the throwaway PostgreSQL and redis-server, a real SMTP server (aiosmtpd).

6 Redis paused (SIGSTOP) while a reset is requested: 202 at once, the email after SIGCONT.
7 a worker SIGKILLed while it sends (the SMTP server stalls): another worker delivers it.
8 the API killed between the commit and the hand-over: the sweep delivers it.
9 the SMTP server refusing: retried with backoff, then recorded and logged as failed.
"""

import asyncio
import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

from app.jobs.broker import STREAM
from tests.drills.harness import DrillResult, Stack, keel
from tests.jobs.worker_process import Worker, running_worker, samples
from tests.mailbox import Mailbox
from tests.ops.gunicorn_process import Gunicorn

JOB_TIMEOUT = "3"  # lease 8 s, redelivery after 13 s: a drill waits for them, so short ones
PASSWORD = "drill password 123"
ACCEPT_WITHIN = 2.0  # a 202 this soon, even with Redis paused (the limiter's 0.5 s included)
DELIVERED_WITHIN = 30.0


def jobs_env(stack: Stack, mailbox: Mailbox, **extra: str) -> dict[str, str]:
    return {
        **stack.server_env(),
        **mailbox.settings,
        "JOB_TIMEOUT_SECONDS": JOB_TIMEOUT,
        "JOB_SWEEP_INTERVAL_SECONDS": "0.5",
        **extra,
    }


@contextmanager
def worker(stack: Stack, mailbox: Mailbox, name: str = "worker", **extra: str) -> Iterator[Worker]:
    directory = Path(tempfile.mkdtemp(prefix="worker-", dir=stack.root))
    with running_worker(directory, name, **jobs_env(stack, mailbox, **extra)) as running:
        yield running


@contextmanager
def api(stack: Stack, mailbox: Mailbox, **extra: str) -> Iterator[Gunicorn]:
    with keel(stack, **{**mailbox.settings, "JOB_TIMEOUT_SECONDS": JOB_TIMEOUT, **extra}) as server:
        yield server


async def register(client: httpx.AsyncClient, email: str) -> None:
    answer = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 201, answer.text


async def request_reset(client: httpx.AsyncClient, email: str) -> tuple[int, float]:
    started = time.monotonic()
    answer = await client.post("/api/v1/auth/password-reset", json={"email": email})
    return answer.status_code, time.monotonic() - started


async def delivered(mailbox: Mailbox, email: str, count: int) -> float | None:
    """Seconds until the `count`-th email to `email` arrived, or None within the bound."""
    started = time.monotonic()
    try:
        await asyncio.to_thread(mailbox.wait_for, email, count, DELIVERED_WITHIN)
    except AssertionError:
        return None
    return time.monotonic() - started


async def job_rows(stack: Stack, name: str) -> list[tuple[str, int, str | None, str]]:
    """(status, attempts, last_error, id) of each job of that name, oldest first."""
    connection = await stack.postgres.connect()
    try:
        rows = await connection.fetch(
            "SELECT status, attempts, last_error, id::text FROM outbox WHERE name = $1"
            " ORDER BY created_at",
            name,
        )
    finally:
        await connection.close()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


async def fresh_queue(stack: Stack) -> None:
    """No job left by an earlier drill (the load's sign-ups queue verification emails)."""
    connection = await stack.postgres.connect()
    try:
        await connection.execute("DELETE FROM outbox")
    finally:
        await connection.close()
    client = redis.Redis(port=stack.redis.port, socket_timeout=5)
    try:
        client.delete(STREAM)
    finally:
        client.close()


async def redis_paused_drill(stack: Stack, pause: float = 5.0) -> DrillResult:
    result = DrillResult("6 jobs-redis-paused")
    email = "paused@example.com"
    await fresh_queue(stack)
    mailbox = Mailbox().start()
    try:
        with api(stack, mailbox) as server, worker(stack, mailbox):
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                await register(client, email)
                await delivered(mailbox, email, 1)
                redis = stack.redis.process
                assert redis is not None
                os.kill(redis.pid, signal.SIGSTOP)
                try:
                    status, latency = await request_reset(client, email)
                    await asyncio.sleep(pause)
                    early = len(mailbox.to(email))
                finally:
                    os.kill(redis.pid, signal.SIGCONT)
                after = await delivered(mailbox, email, 2)
    finally:
        mailbox.stop()
    result.figures |= {"status": status, "answered_in": latency, "paused": pause}
    result.figures |= {"emails_while_paused": early - 1, "email_after_sigcont": after}
    result.figures["emails_total"] = len(mailbox.to(email))
    result.check(status == 202, f"the reset request got {status}, not 202")
    result.check(latency <= ACCEPT_WITHIN, f"the 202 took {latency:.2f} s")
    result.check(after is not None, "no reset email after Redis came back")
    result.check(len(mailbox.to(email)) == 2, "the reset email was sent more than once")
    return result


async def worker_killed_drill(stack: Stack) -> DrillResult:
    result = DrillResult("7 jobs-worker-killed")
    email = "killed@example.com"
    await fresh_queue(stack)
    mailbox = Mailbox().start()
    try:
        with api(stack, mailbox) as server:
            with worker(stack, mailbox, "doomed") as doomed:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                    await register(client, email)
                    await delivered(mailbox, email, 1)
                    mailbox.stall = True
                    status, _ = await request_reset(client, email)
                    # Until the worker is inside the SMTP DATA of the reset email.
                    await asyncio.to_thread(mailbox.wait_attempts, 2)
                    doomed.kill()
                    killed = time.monotonic()
                    mailbox.stall = False
            with worker(stack, mailbox, "rescuer") as rescuer:
                after = await delivered(mailbox, email, 2)
                taken_over = time.monotonic() - killed
                figures = await asyncio.to_thread(samples, rescuer)
                log = rescuer.log_text()
    finally:
        mailbox.stop()
    rows = await job_rows(stack, "send_password_reset_email")
    result.figures |= {"status": status, "delivered_after_kill": taken_over if after else None}
    result.figures["attempts"] = rows[-1][1] if rows else None
    job_id = rows[-1][3] if rows else "?"
    swept = [line for line in log.splitlines() if '"jobs_swept"' in line and job_id in line]
    result.figures["by"] = "sweep" if swept else "redis-redelivery"
    result.figures["rescuer_succeeded"] = int(
        figures.get('jobs_succeeded_total{job="send_password_reset_email"}', 0)
    )
    result.check(after is not None, "no worker delivered the job of the killed one")
    result.check(len(mailbox.to(email)) == 2, "the reset email arrived more than once")
    result.check(rows[-1][:2] == ("succeeded", 2), f"outbox row: {rows}")
    return result


@contextmanager
def black_hole() -> Iterator[str]:
    """A Redis URL whose server accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)  # connections complete in the backlog; nothing ever reads them
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


async def api_killed_drill(stack: Stack) -> DrillResult:
    result = DrillResult("8 jobs-api-killed")
    email = "crashed@example.com"
    await fresh_queue(stack)
    mailbox = Mailbox().start()
    try:
        with worker(stack, mailbox):
            with api(stack, mailbox) as server:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                    await register(client, email)
                    await delivered(mailbox, email, 1)
            # This API's hand-over hangs (its Redis never answers): killed meanwhile, it has
            # committed the job and handed over nothing.
            with black_hole() as nowhere, api(stack, mailbox, REDIS_URL=nowhere) as server:
                async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                    status, _ = await request_reset(client, email)
                os.killpg(server.process.pid, signal.SIGKILL)
                killed = time.monotonic()
            after = await delivered(mailbox, email, 2)
            swept_after = time.monotonic() - killed
    finally:
        mailbox.stop()
    rows = await job_rows(stack, "send_password_reset_email")
    result.figures |= {"status": status, "delivered_after_kill": swept_after if after else None}
    result.figures["outbox"] = rows[-1][0] if rows else None
    result.check(status == 202, f"the reset request got {status}, not 202")
    result.check(after is not None, "the sweep never handed the committed job over")
    result.check(len(mailbox.to(email)) == 2, "the reset email arrived more than once")
    return result


async def smtp_refusing_drill(stack: Stack, code: int = 451) -> DrillResult:
    result = DrillResult(f"9 jobs-smtp-{code}")
    email = f"refused{code}@example.com"
    await fresh_queue(stack)
    mailbox = Mailbox().start()
    retries = {"JOB_MAX_ATTEMPTS": "3", "JOB_RETRY_BASE_SECONDS": "0.5"}
    try:
        with api(stack, mailbox) as server, worker(stack, mailbox, **retries) as running:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                await register(client, email)
                await delivered(mailbox, email, 1)
                mailbox.refuse_with = code
                status, _ = await request_reset(client, email)
                rows: list[tuple[str, int, str | None, str]] = []
                for _ in range(200):
                    rows = await job_rows(stack, "send_password_reset_email")
                    if rows and rows[-1][0] != "pending":
                        break
                    await asyncio.sleep(0.1)
            figures = await asyncio.to_thread(samples, running)
            log = running.log_text()
    finally:
        mailbox.stop()
    label = '{job="send_password_reset_email"}'
    row = rows[-1] if rows else ("missing", 0, None, "")
    result.figures |= {"status": status, "outbox": row[0], "attempts": row[1]}
    result.figures["smtp_tries"] = mailbox.attempts - 1
    result.figures["retried"] = int(figures.get(f"jobs_retried_total{label}", 0))
    result.figures["failed"] = int(figures.get(f"jobs_failed_total{label}", 0))
    result.check(row[:2] == ("failed", 3), f"outbox row: {row}")
    result.check(str(code) in (row[2] or ""), "the recorded reason lacks the SMTP code")
    result.check('"event":"job_failed"' in log, "no job_failed line in the worker's log")
    return result
