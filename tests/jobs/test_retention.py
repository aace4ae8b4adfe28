"""Nothing grows without bound (CONTRACT.md section 9): finished jobs, spent account tokens and
ended sessions go after RETENTION_DAYS, expired idempotency answers after their 24 h, deleted by
the worker's retention sweep in bounded batches, never in a request's path."""

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.core import database
from app.core.logging import configure_logging
from app.jobs.retention import sweep_retention
from app.models import AccountToken, AuthSession, IdempotencyRecord, OutboxJob, User
from app.models.base import utc_now
from tests.api.conftest import make_account
from tests.conftest import _ClientContext
from tests.core.test_logging import json_lines

NOW = utc_now()
DAYS = timedelta(days=1)


async def add_rows(engine: AsyncEngine) -> uuid.UUID:
    """Rows on both sides of each limit, for one user; the user's id."""
    user_id = uuid.uuid4()
    async with engine.begin() as conn:
        await conn.execute(
            insert(User).values(
                id=user_id, email="old@example.com", hashed_password="x", created_at=NOW
            )
        )
        jobs = [  # (status, finished days ago): only the long-finished ones go
            ("succeeded", 31),
            ("failed", 31),
            ("succeeded", 29),
            ("pending", None),
        ]
        for n, (status, days) in enumerate(jobs * 3):  # 12 rows: several batches of 2
            await conn.execute(
                insert(OutboxJob).values(
                    id=uuid.uuid4(),
                    name="send_password_reset_email",
                    payload={} if status != "pending" else {"email": "old@example.com"},
                    status=status,
                    due_at=NOW - 40 * DAYS,
                    created_at=NOW - 40 * DAYS,
                    finished_at=None if days is None else NOW - days * DAYS,
                    attempts=n,
                )
            )
        tokens = [  # (used days ago, expires in days): spent more than 30 days ago goes
            (31, -20),
            (None, -31),
            (29, 1),
            (None, 1),
        ]
        for used, expires in tokens:
            await conn.execute(
                insert(AccountToken).values(
                    id=uuid.uuid4(),
                    user_id=user_id,
                    purpose="password_reset",
                    token_hash=uuid.uuid4().hex,
                    email="old@example.com",
                    created_at=NOW - 60 * DAYS,
                    expires_at=NOW + expires * DAYS,
                    used_at=None if used is None else NOW - used * DAYS,
                )
            )
        sessions = [(31, 10), (None, -31), (29, 10), (None, 5)]  # (revoked ago, expires in)
        for revoked, expires in sessions:
            await conn.execute(
                insert(AuthSession).values(
                    id=uuid.uuid4(),
                    user_id=user_id,
                    refresh_jti=uuid.uuid4(),
                    created_at=NOW - 60 * DAYS,
                    expires_at=NOW + expires * DAYS,
                    revoked_at=None if revoked is None else NOW - revoked * DAYS,
                )
            )
        for key, age in (("old", timedelta(hours=25)), ("fresh", timedelta(hours=23))):
            await conn.execute(
                insert(IdempotencyRecord).values(
                    user_id=user_id,
                    key=key,
                    fingerprint="f" * 64,
                    status_code=201,
                    headers={},
                    body=b"{}",
                    created_at=NOW - age,
                )
            )
    return user_id


async def counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            model.__tablename__: await conn.scalar(select(func.count()).select_from(model)) or 0
            for model in (OutboxJob, AccountToken, AuthSession, IdempotencyRecord)
        }


@pytest.mark.usefixtures("_clean_tables")
async def test_the_sweep_deletes_what_served_its_time_in_batches(
    make_settings: Callable[..., Settings],
    cleanup_engine: AsyncEngine,
    capfd: pytest.CaptureFixture[str],
) -> None:
    await add_rows(cleanup_engine)
    settings = make_settings()
    assert settings.RETENTION_DAYS == 30
    configure_logging(settings)
    engine = database.create_engine(settings)
    try:
        deleted = await sweep_retention(settings, database.create_sessionmaker(engine), batch=2)
    finally:
        await engine.dispose()
    assert deleted == {"outbox": 6, "account_tokens": 2, "sessions": 2, "idempotency_keys": 1}
    assert await counts(cleanup_engine) == {
        "outbox": 6,  # finished 29 days ago, and pending
        "account_tokens": 2,
        "sessions": 2,
        "idempotency_keys": 1,
    }
    async with cleanup_engine.connect() as conn:
        keys = (await conn.execute(select(IdempotencyRecord.key))).scalars().all()
    assert keys == ["fresh"]
    swept = [
        line for line in json_lines(capfd.readouterr().err) if line["event"] == "retention_swept"
    ]
    assert len(swept) == 1
    assert swept[0]["outbox"] == 6


async def test_a_keyed_post_deletes_nobody_elses_expired_answers(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    cleanup_engine: AsyncEngine,
) -> None:
    """The request path touches its own key only; the backlog is the worker's."""
    async with make_client(make_settings()) as client:
        await add_rows(cleanup_engine)
        alice = await make_account(client, "alice@example.com")
        created: httpx.Response = await client.post(
            "/api/v1/items",
            json={"title": "Milk"},
            headers={**alice.headers, "Idempotency-Key": "k1"},
        )
        assert created.status_code == 201
    assert (await counts(cleanup_engine))["idempotency_keys"] == 3


async def test_the_api_process_sweeps_when_it_runs_the_jobs(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    cleanup_engine: AsyncEngine,
) -> None:
    """Without REDIS_URL (development) the API process is the worker: it sweeps too."""
    await add_rows(cleanup_engine)
    kept = {"outbox": 6, "account_tokens": 2, "sessions": 2, "idempotency_keys": 1}
    async with make_client(make_settings(RETENTION_INTERVAL_SECONDS=0.1)):
        for _ in range(100):
            if await counts(cleanup_engine) == kept:
                break
            await asyncio.sleep(0.05)
    assert await counts(cleanup_engine) == kept
