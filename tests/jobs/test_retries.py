"""Failing jobs are retried with backoff up to JOB_MAX_ATTEMPTS, then recorded and logged as
failed with their id and reason; the SMTP server here refuses for real (4xx / 5xx)."""

import asyncio
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings, load_settings
from app.jobs.runner import JobRunner
from app.models import OutboxJob
from app.models.base import utc_now
from tests.conftest import _ClientContext
from tests.core.test_logging import json_lines
from tests.mailbox import Mailbox

REGISTER = "/api/v1/auth/register"
FAST_RETRIES = {
    "JOB_MAX_ATTEMPTS": 3,
    "JOB_RETRY_BASE_SECONDS": 0.05,
    "JOB_SWEEP_INTERVAL_SECONDS": 0.05,
}


async def finished_job(engine: AsyncEngine) -> OutboxJob:
    for _ in range(400):
        async with engine.connect() as conn:
            job = (await conn.execute(select(OutboxJob))).one_or_none()
        if job is not None and job.status != "pending":
            return job  # type: ignore[return-value]
        await asyncio.sleep(0.05)
    raise AssertionError(f"job not finished: {job}")


@pytest.mark.parametrize("code", [451, 550])
async def test_refused_email_is_retried_then_recorded_failed(
    *,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    cleanup_engine: AsyncEngine,
    mailbox: Mailbox,
    capfd: pytest.CaptureFixture[str],
    code: int,
) -> None:
    mailbox.refuse_with = code
    async with make_client(make_settings(**mailbox.settings, **FAST_RETRIES)) as client:
        created = await client.post(
            REGISTER, json={"email": "ann@example.com", "password": "p" * 12}
        )
        assert created.status_code == 201
        job = await finished_job(cleanup_engine)
    assert (job.status, job.attempts, mailbox.attempts) == ("failed", 3, 3)
    assert str(code) in (job.last_error or "")
    lines = json_lines(capfd.readouterr().err)
    retries = [line for line in lines if line["event"] == "job_retry"]
    failed = [line for line in lines if line["event"] == "job_failed"]
    assert [line["retry_in_seconds"] for line in retries] == [0.05, 0.2]  # quadrupling backoff
    assert len(failed) == 1
    assert failed[0]["job_id"] == str(job.id)
    assert failed[0]["job"] == "send_verification_email"
    assert str(code) in failed[0]["reason"]
    assert failed[0]["request_id"] == created.headers["x-request-id"]  # the originating request


async def test_a_job_that_fails_once_succeeds_on_retry(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    cleanup_engine: AsyncEngine,
    mailbox: Mailbox,
) -> None:
    mailbox.refuse_with = 421
    slower = {**FAST_RETRIES, "JOB_RETRY_BASE_SECONDS": 1.0}  # time to stop refusing
    async with make_client(make_settings(**mailbox.settings, **slower)) as client:
        await client.post(REGISTER, json={"email": "ann@example.com", "password": "p" * 12})
        await asyncio.to_thread(lambda: _wait(lambda: mailbox.attempts >= 1))
        mailbox.refuse_with = None
        job = await finished_job(cleanup_engine)
    assert (job.status, job.attempts) == ("succeeded", 2)
    assert len(mailbox.to("ann@example.com")) == 1


def _wait(condition: Callable[[], bool]) -> None:
    for _ in range(400):
        if condition():
            return
        time.sleep(0.025)
    raise AssertionError("condition never held")


async def test_redis_down_still_202_and_the_job_waits_for_the_sweep(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    cleanup_engine: AsyncEngine,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """A refused hand-over leaves the committed job due at once, for the workers' sweep."""
    settings = make_settings(REDIS_URL="redis://127.0.0.1:1/0")  # nothing listens there
    async with make_client(settings) as client:
        answer = await client.post("/api/v1/auth/password-reset", json={"email": "a@example.com"})
        assert answer.status_code == 202
        for _ in range(200):
            async with cleanup_engine.connect() as conn:
                job = (await conn.execute(select(OutboxJob))).one()
            if job.due_at <= utc_now():
                break
            await asyncio.sleep(0.05)
    assert (job.status, job.attempts) == ("pending", 0)
    assert job.due_at <= utc_now()
    events = [line["event"] for line in json_lines(capfd.readouterr().err)]
    assert "jobs_hand_over_failed" in events


def test_the_default_schedule_outlasts_an_hour_of_smtp_outage() -> None:
    """With the defaults, the last attempt of an email queued as the mail server went down
    comes more than an hour later, so an hour's outage fails nothing for good (CONTRACT §9)."""
    settings = load_settings(_env_file=None, ENVIRONMENT="test")
    runner = JobRunner(settings, None, None)  # type: ignore[arg-type]  # only the schedule
    waits = [runner.backoff(attempt) for attempt in range(1, settings.JOB_MAX_ATTEMPTS)]
    assert settings.JOB_MAX_ATTEMPTS == 5
    assert sum(waits) > 3600
    assert waits == sorted(waits)
    assert waits[0] <= 60  # a blip is still retried soon
