"""An email job that runs twice (a worker died after sending, before recording the end) sends
the same link twice, and the first copy's link keeps working (CONTRACT.md section 9)."""

import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.models import OutboxJob
from tests.api.conftest import make_account
from tests.api.test_accounts import jobs_finished
from tests.conftest import _ClientContext
from tests.mailbox import Mailbox, token_in

AUTH = "/api/v1/auth"


async def run_again(
    app_jobs: object, engine: AsyncEngine, job_id: uuid.UUID, payload: dict[str, str]
) -> None:
    """What a redelivery after a worker died between sending and recording the end looks like:
    the job pending as it was, its lease gone."""
    async with engine.begin() as conn:
        await conn.execute(
            update(OutboxJob)
            .where(OutboxJob.id == job_id)
            .values(status="pending", locked_until=None, finished_at=None, payload=payload)
        )
    await app_jobs.runner.run(job_id)  # type: ignore[attr-defined]


async def job_id_of(engine: AsyncEngine, name: str) -> uuid.UUID:
    async with engine.connect() as conn:
        return (await conn.execute(select(OutboxJob.id).where(OutboxJob.name == name))).scalar_one()


@pytest.mark.parametrize(
    ("job", "confirm"),
    [
        ("send_verification_email", lambda token: ("verify-email", {"token": token})),
        (
            "send_password_reset_email",
            lambda token: ("password-reset/confirm", {"token": token, "new_password": "n" * 14}),
        ),
    ],
)
async def test_a_rerun_sends_the_same_link_and_the_first_keeps_working(
    *,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    cleanup_engine: AsyncEngine,
    mailbox: Mailbox,
    job: str,
    confirm: Callable[[str], tuple[str, dict[str, str]]],
) -> None:
    context = make_client(make_settings(**mailbox.settings))
    async with context as client:
        ann = await make_account(client, "ann@example.com")
        payload = {"email": ann.email}
        if job == "send_verification_email":
            payload["user_id"] = ann.id
        if job == "send_password_reset_email":
            asked = await client.post(f"{AUTH}/password-reset", json={"email": "ann@example.com"})
            assert asked.status_code == 202
        await jobs_finished(cleanup_engine)
        count = 2 if job == "send_password_reset_email" else 1
        first = await mailbox.received("ann@example.com", count)

        job_id = await job_id_of(cleanup_engine, job)
        await run_again(context.app.state.jobs, cleanup_engine, job_id, payload)
        second = await mailbox.received("ann@example.com", count + 1)

        assert token_in(second) == token_in(first)
        path, body = confirm(token_in(first))
        used: httpx.Response = await client.post(f"{AUTH}/{path}", json=body)
        assert used.status_code in (200, 204), used.text


async def test_each_job_has_its_own_link(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    cleanup_engine: AsyncEngine,
    mailbox: Mailbox,
) -> None:
    """Two reset requests are two jobs: two different links, only the newest works."""
    async with make_client(make_settings(**mailbox.settings)) as client:
        await make_account(client, "ann@example.com")
        for _ in range(2):
            await client.post(f"{AUTH}/password-reset", json={"email": "ann@example.com"})
            await jobs_finished(cleanup_engine)
        received = [token_in(message) for message in mailbox.to("ann@example.com")[1:]]
        assert len(set(received)) == 2
        stale = await client.post(
            f"{AUTH}/password-reset/confirm", json={"token": received[0], "new_password": "n" * 14}
        )
        assert stale.status_code == 400


async def test_a_finished_job_keeps_no_address(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    cleanup_engine: AsyncEngine,
    mailbox: Mailbox,
) -> None:
    """The address typed into /password-reset (even one with no account) leaves the outbox
    once the job is done."""
    async with make_client(make_settings(**mailbox.settings)) as client:
        await make_account(client, "ann@example.com")
        for email in ("ann@example.com", "nobody@example.com"):
            await client.post(f"{AUTH}/password-reset", json={"email": email})
        jobs = await jobs_finished(cleanup_engine)
    assert len(jobs) == 3
    assert all(job.payload == {} for job in jobs)
    assert "example.com" not in str([tuple(job) for job in jobs])
