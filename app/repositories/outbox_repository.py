"""All SQL about the job outbox: recording, handing over, leasing and finishing jobs.

Every state change is one conditional UPDATE, so two sweepers or two deliveries of one job
cannot both act on it.
"""

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.tracing import current_carrier
from app.models import OutboxJob
from app.models.base import utc_now

# `session.info` key: ids of the jobs this session recorded, handed over after its commit.
RECORDED_JOBS: Final = "recorded_jobs"
PENDING: Final = "pending"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"


def record(session: AsyncSession, name: str, payload: dict[str, Any], *, due_in: float) -> None:
    """Add a job to the session's transaction; `due_in` seconds from now the sweep takes over."""
    job = OutboxJob(
        id=uuid.uuid4(),
        name=name,
        payload=payload,
        request_id=structlog.contextvars.get_contextvars().get("request_id"),
        trace_context=current_carrier(),
        due_at=utc_now() + timedelta(seconds=due_in),
    )
    session.add(job)
    session.info.setdefault(RECORDED_JOBS, []).append(job.id)


def _available(now: datetime) -> Any:
    return (
        OutboxJob.status == PENDING,
        OutboxJob.due_at <= now,
        or_(OutboxJob.locked_until.is_(None), OutboxJob.locked_until < now),
    )


async def take_due(session: AsyncSession, *, limit: int, due_again_in: float) -> list[uuid.UUID]:
    """Ids of jobs that are due, each pushed `due_again_in` seconds into the future."""
    now = utc_now()
    ids = (
        await session.scalars(
            select(OutboxJob.id).where(*_available(now)).order_by(OutboxJob.due_at).limit(limit)
        )
    ).all()
    if not ids:
        return []
    taken = await session.scalars(
        update(OutboxJob)
        .where(OutboxJob.id.in_(ids), *_available(now))
        .values(due_at=now + timedelta(seconds=due_again_in))
        .returning(OutboxJob.id)
        .execution_options(synchronize_session=False)
    )
    return list(taken.all())


async def make_due(session: AsyncSession, ids: Sequence[uuid.UUID]) -> None:
    """The hand-over failed: let the next sweep take these at once."""
    await session.execute(
        update(OutboxJob)
        .where(OutboxJob.id.in_(ids), OutboxJob.status == PENDING)
        .values(due_at=utc_now())
        .execution_options(synchronize_session=False)
    )


async def lease(
    session: AsyncSession, job_id: uuid.UUID, *, seconds: float, due_again_in: float
) -> OutboxJob | None:
    """Start an attempt: the job, unless it is finished or another worker holds its lease.

    Should this worker die, the queue delivers the job again; failing that (the queue lost it),
    the sweep hands it over again `due_again_in` seconds from now.
    """
    now = utc_now()
    until = now + timedelta(seconds=seconds)
    result = await session.execute(
        update(OutboxJob)
        .where(
            OutboxJob.id == job_id,
            OutboxJob.status == PENDING,
            or_(OutboxJob.locked_until.is_(None), OutboxJob.locked_until < now),
        )
        .values(
            locked_until=until,
            due_at=now + timedelta(seconds=due_again_in),
            attempts=OutboxJob.attempts + 1,
        )
        .returning(OutboxJob)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


async def finish(
    session: AsyncSession, job_id: uuid.UUID, *, status: str, error: str | None
) -> None:
    """Record the end; the payload goes (it may hold an email address nobody needs any more)."""
    await session.execute(
        update(OutboxJob)
        .where(OutboxJob.id == job_id)
        .values(
            status=status, last_error=error, finished_at=utc_now(), locked_until=None, payload={}
        )
        .execution_options(synchronize_session=False)
    )


async def retry_later(
    session: AsyncSession, job_id: uuid.UUID, *, delay: float, error: str
) -> None:
    await session.execute(
        update(OutboxJob)
        .where(OutboxJob.id == job_id)
        .values(last_error=error, locked_until=None, due_at=utc_now() + timedelta(seconds=delay))
        .execution_options(synchronize_session=False)
    )


async def pending_count(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(OutboxJob).where(OutboxJob.status == PENDING)
    )
    return count or 0


async def oldest_waiting_since(session: AsyncSession) -> datetime | None:
    """When the oldest job that never started was recorded (None when none waits)."""
    return await session.scalar(
        select(func.min(OutboxJob.created_at)).where(
            OutboxJob.status == PENDING, OutboxJob.attempts == 0
        )
    )


async def get(session: AsyncSession, job_id: uuid.UUID) -> OutboxJob | None:
    return await session.get(OutboxJob, job_id)
