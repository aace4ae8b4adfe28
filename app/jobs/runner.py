"""Running one job by id: lease it, run its handler within JOB_TIMEOUT_SECONDS, record the end.

At least once: a job is leased before it runs, so a second delivery of it does nothing while it
runs or after it succeeded; a worker that dies mid-job leaves the lease to expire and the job to
be delivered again. A failure is retried with exponential backoff (x4, capped at an hour) up to
JOB_MAX_ATTEMPTS, then recorded and logged as failed with its id and reason. A finished job's
payload is emptied: it may hold an email address, and nothing needs it any more.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, get_current_span
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core import error_reporting, tracing
from app.core.exceptions import describe
from app.emails.sender import EmailSender
from app.jobs import metrics
from app.jobs.handlers import HANDLERS
from app.models.base import utc_now
from app.repositories import outbox_repository

logger = structlog.get_logger("app.jobs")

MAX_BACKOFF_SECONDS = 3600.0
# Steep on purpose: with 5 attempts a doubling schedule covers minutes of a mail server's
# outage, a quadrupling one covers more than an hour while its first retry stays prompt.
BACKOFF_FACTOR = 4.0
HandOver = Callable[[list[uuid.UUID]], Awaitable[None]]


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        sender: EmailSender,
        tracer: Tracer | None = None,
    ) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.sender = sender
        self.tracer = tracer  # None: tracing is off

    def backoff(self, attempts: int) -> float:
        delay = self.settings.JOB_RETRY_BASE_SECONDS * BACKOFF_FACTOR ** (attempts - 1)
        return min(delay, MAX_BACKOFF_SECONDS)

    async def run(self, job_id: uuid.UUID) -> None:
        """Run the job unless it is finished or running elsewhere; never raises."""
        try:
            await self._run(job_id)
        except Exception:
            # The database failed around the job: its lease runs out and the sweep retries it.
            logger.exception("job_run_error", job_id=str(job_id))

    async def _run(self, job_id: uuid.UUID) -> None:
        # Not traced: the lease comes before the job's trace context is known (it is in the
        # row), and a delivery that finds the job taken would be a trace of its own.
        with suppress_instrumentation():
            async with self.sessionmaker() as session:
                job = await outbox_repository.lease(
                    session,
                    job_id,
                    seconds=self.settings.job_lease_seconds,
                    due_again_in=2 * self.settings.job_redeliver_seconds,
                )
                await session.commit()
        if job is None:
            logger.debug("job_skipped", job_id=str(job_id))
            return
        # The originating request's id on each of the job's log lines.
        with structlog.contextvars.bound_contextvars(request_id=job.request_id):
            if self.tracer is None:
                await self._attempt(job.id, job.name, job.payload, job.attempts)
                return
            # A span of the recording request's trace, whichever way and however often the
            # job got here (hand-over, sweep, retry, redelivery).
            with self.tracer.start_as_current_span(
                f"job {job.name}",
                context=tracing.extract(job.trace_context),
                kind=SpanKind.CONSUMER,
                attributes={
                    "keel.job.id": str(job.id),
                    "keel.job.name": job.name,
                    "keel.job.attempt": job.attempts,
                },
            ):
                await self._attempt(job.id, job.name, job.payload, job.attempts)

    async def _attempt(
        self, job_id: uuid.UUID, name: str, payload: dict[str, object], n: int
    ) -> None:
        log = logger.bind(job_id=str(job_id), job=name, attempt=n)
        metrics.STARTED.labels(job=name).inc()
        log.info("job_started")
        started = time.perf_counter()
        try:
            handler = HANDLERS[name]
            async with asyncio.timeout(self.settings.JOB_TIMEOUT_SECONDS):
                async with self.sessionmaker() as session:
                    await handler(session, self.settings, self.sender, job_id, dict(payload))
                    await session.commit()
        except Exception as error:
            outcome = await self._failed(log, job_id, name, n, error)
            metrics.DURATION.labels(job=name, outcome=outcome).observe(
                time.perf_counter() - started
            )
            return
        metrics.DURATION.labels(job=name, outcome="succeeded").observe(
            time.perf_counter() - started
        )
        async with self.sessionmaker() as session:
            await outbox_repository.finish(
                session, job_id, status=outbox_repository.SUCCEEDED, error=None
            )
            await session.commit()
        metrics.SUCCEEDED.labels(job=name).inc()
        log.info("job_succeeded")

    async def _failed(
        self, log: Any, job_id: uuid.UUID, name: str, n: int, error: Exception
    ) -> str:
        """Record the failure; the outcome: `retried` or, past JOB_MAX_ATTEMPTS, `failed`."""
        reason = describe(error)[:2000]
        # The job's span, when traced (a no-op span otherwise).
        get_current_span().set_status(Status(StatusCode.ERROR, type(error).__name__))
        async with self.sessionmaker() as session:
            if n >= self.settings.JOB_MAX_ATTEMPTS:
                await outbox_repository.finish(
                    session, job_id, status=outbox_repository.FAILED, error=reason
                )
                await session.commit()
                metrics.FAILED.labels(job=name).inc()
                log.error("job_failed", reason=reason)
                error_reporting.report(error, job=name, job_id=str(job_id))
                return "failed"
            delay = self.backoff(n)
            await outbox_repository.retry_later(session, job_id, delay=delay, error=reason)
            await session.commit()
        metrics.RETRIED.labels(job=name).inc()
        log.warning("job_retry", reason=reason, retry_in_seconds=delay)
        return "retried"


async def sweep(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    hand_over: HandOver,
    *,
    batch: int = 100,
) -> int:
    """Hand over the jobs that are due (never handed over, to retry, or lost); how many."""
    # Housekeeping every few seconds: no trace of its own (the jobs carry their request's).
    with suppress_instrumentation():
        async with sessionmaker() as session:
            ids = await outbox_repository.take_due(
                session, limit=batch, due_again_in=settings.job_redeliver_seconds
            )
            depth = await outbox_repository.pending_count(session)
            since = await outbox_repository.oldest_waiting_since(session)
            await session.commit()
    metrics.QUEUE_DEPTH.set(depth)
    metrics.OLDEST_WAITING.set(0 if since is None else max(0, (utc_now() - since).total_seconds()))
    if ids:
        logger.info("jobs_swept", count=len(ids), job_ids=[str(job_id) for job_id in ids])
        await hand_over(ids)
    return len(ids)
