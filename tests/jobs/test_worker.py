"""Real worker processes on real Redis: each flow end to end over HTTP, the link read out of the
message the SMTP server received; the worker's metrics, liveness and SIGTERM."""

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from taskiq.kicker import AsyncKicker

from app.config import Settings
from app.jobs.broker import STREAM, make_broker, run_job_kicker
from tests.api.conftest import PASSWORD, make_account
from tests.conftest import _ClientContext
from tests.core.test_logging import json_lines
from tests.jobs.worker_process import (
    REPO_ROOT,
    Worker,
    running_worker,
    samples,
    wait_for_exit,
    worker_env,
)
from tests.mailbox import Mailbox, token_in

AUTH = "/api/v1/auth"


@pytest.fixture
def jobs_redis(redis_url: str) -> str:
    """TEST_REDIS_URL with no job stream left by an earlier test."""
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(STREAM)
        for key in client.scan_iter(match=f"autoclaim:*:{STREAM}"):
            client.delete(key)
    finally:
        client.close()
    return redis_url


@pytest.fixture
def worker(
    tmp_path: Path, database_url: str, jobs_redis: str, mailbox: Mailbox
) -> Iterator[Worker]:
    with running_worker(
        tmp_path, DATABASE_URL=database_url, REDIS_URL=jobs_redis, **mailbox.settings
    ) as running:
        yield running


@pytest.fixture
def api(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    jobs_redis: str,
    mailbox: Mailbox,
) -> _ClientContext:
    return make_client(make_settings(REDIS_URL=jobs_redis, **mailbox.settings))


async def test_verification_and_reset_through_the_worker(
    api: _ClientContext, worker: Worker, mailbox: Mailbox
) -> None:
    async with api as client:
        registered = await client.post(
            f"{AUTH}/register",
            json={"email": "ann@example.com", "password": PASSWORD},
            headers={"X-Request-ID": "register-ann-1"},
        )
        assert registered.status_code == 201
        ann = await make_account(client, "ann@example.com")
        token = token_in(await mailbox.received("ann@example.com"))
        verified = await client.post(f"{AUTH}/verify-email", json={"token": token})
        assert verified.json()["email_verified"] is True

        reset = await client.post(f"{AUTH}/password-reset", json={"email": ann.email})
        assert reset.status_code == 202
        token = token_in(await mailbox.received("ann@example.com", 2))
        body = {"token": token, "new_password": "a brand new password 42"}
        confirmed = await client.post(f"{AUTH}/password-reset/confirm", json=body)
        assert confirmed.status_code == 204
    figures = await asyncio.to_thread(samples, worker)
    assert figures['jobs_succeeded_total{job="send_verification_email"}'] == 1
    assert figures['jobs_succeeded_total{job="send_password_reset_email"}'] == 1
    assert figures['jobs_started_total{job="send_verification_email"}'] == 1
    assert "jobs_queue_depth" in figures
    # The worker logs JSON, with the originating request's id on the job's lines.
    lines = json_lines(worker.log_text())
    verification = [line for line in lines if line.get("job") == "send_verification_email"]
    assert {line["event"] for line in verification} == {"job_started", "job_succeeded"}
    assert {line["request_id"] for line in verification} == {"register-ann-1"}


async def test_two_workers_share_the_jobs_and_send_each_email_once(
    *,
    api: _ClientContext,
    worker: Worker,
    tmp_path: Path,
    database_url: str,
    jobs_redis: str,
    mailbox: Mailbox,
) -> None:
    with running_worker(
        tmp_path, "second", DATABASE_URL=database_url, REDIS_URL=jobs_redis, **mailbox.settings
    ) as second:
        async with api as client:
            for n in range(6):
                await client.post(f"{AUTH}/password-reset", json={"email": f"u{n}@example.com"})
                await make_account(client, f"user{n}@example.com")
            for n in range(6):
                await mailbox.received(f"user{n}@example.com")
        per_worker = [await asyncio.to_thread(samples, one) for one in (worker, second)]
    ran = [f.get('jobs_succeeded_total{job="send_verification_email"}', 0) for f in per_worker]
    assert sum(ran) == 6
    assert len(mailbox.messages) == 6  # and nothing for the unknown addresses


def test_liveness_and_unknown_paths(worker: Worker) -> None:
    live = httpx.get(f"{worker.health_url}/health/live")
    assert (live.status_code, live.json()) == (200, {"status": "alive"})
    assert httpx.get(f"{worker.health_url}/nope").status_code == 404
    assert httpx.post(f"{worker.health_url}/health/live").status_code == 405


def test_sigterm_stops_the_worker_cleanly(worker: Worker) -> None:
    worker.process.send_signal(signal.SIGTERM)
    assert wait_for_exit(worker, 20) == 0
    assert '"event":"worker_stopped"' in worker.log_text()


async def test_sigterm_lets_the_running_job_finish(
    api: _ClientContext, worker: Worker, mailbox: Mailbox
) -> None:
    mailbox.slow_seconds = 2.0
    async with api as client:
        await client.post(
            f"{AUTH}/register", json={"email": "ann@example.com", "password": PASSWORD}
        )
        await asyncio.to_thread(mailbox.wait_attempts, 1)  # the worker is sending
        worker.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(wait_for_exit, worker, 20) == 0
    assert len(mailbox.to("ann@example.com")) == 1
    events = [line["event"] for line in json_lines(worker.log_text())]
    assert events.index("worker_stopping") < events.index("job_succeeded")


def test_the_worker_refuses_to_start_without_redis(tmp_path: Path) -> None:
    env = worker_env(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'k.db'}")
    done = subprocess.run(
        [sys.executable, "-m", "app", "worker"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 2
    assert b"REDIS_URL" in done.stderr


async def test_a_message_that_cannot_run_is_acknowledged_and_recorded_failed(
    make_settings: Callable[..., Settings], worker: Worker, jobs_redis: str
) -> None:
    """Unreadable bytes, an unknown job and a job id that is no id: each acknowledged (not
    redelivered every idle_timeout forever), logged as failed with its reason, and counted."""
    broker = make_broker(make_settings(REDIS_URL=jobs_redis), worker=False)
    try:
        await AsyncKicker(task_name="keel.no_such_job", broker=broker, labels={}).kiq("x")
        await run_job_kicker(broker).kiq("not-a-job-id")
    finally:
        await broker.shutdown()
    client = redis.Redis.from_url(jobs_redis)
    try:
        client.xadd(STREAM, {b"data": b"\xff not a message"})
        for _ in range(200):
            groups = client.xinfo_groups(STREAM)
            if groups and groups[0]["pending"] == 0 and groups[0]["entries-read"] == 3:
                break
            await asyncio.sleep(0.05)
        assert groups[0]["pending"] == 0, groups
    finally:
        client.close()
    failed = [
        line for line in json_lines(worker.log_text()) if line["event"] == "job_message_failed"
    ]
    reasons = " ".join(line["reason"] for line in failed)
    assert len(failed) == 3, failed
    assert "keel.no_such_job" in reasons
    assert "not-a-job-id" in reasons
    figures = await asyncio.to_thread(samples, worker)
    assert figures['jobs_failed_total{job="<unrunnable>"}'] == 3
