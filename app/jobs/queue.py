"""Handing recorded jobs over after the commit: to Redis, or to this process's own runner.

A hand-over never fails the request that recorded the jobs: it runs in the background after the
commit, and whatever it could not hand over stays due in the outbox for the sweep.
"""

import asyncio
import contextlib
import uuid
from collections.abc import Coroutine
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.tracing import Tracing
from app.emails.sender import build_sender
from app.jobs.broker import make_broker, run_job_kicker
from app.jobs.retention import sweep_retention
from app.jobs.runner import JobRunner, sweep
from app.repositories import outbox_repository

logger = structlog.get_logger("app.jobs")

DRAIN_SECONDS: Final = 10.0  # at shutdown, jobs still running after this are left to the sweep


class JobQueue:
    """The API's side: `after_commit(ids)`; closing waits (briefly) for the hand-overs."""

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self._tasks: set[asyncio.Task[None]] = set()

    def after_commit(self, ids: list[uuid.UUID]) -> None:
        self._spawn(self.hand_over(ids))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)  # a task nobody references may be garbage-collected mid-way
        task.add_done_callback(self._tasks.discard)

    async def hand_over(self, ids: list[uuid.UUID]) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Begin background work (the in-process sweep)."""

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=DRAIN_SECONDS)
        for task in set(self._tasks):
            task.cancel()


class RedisJobQueue(JobQueue):
    """With REDIS_URL: jobs go to the workers through Redis (see app.jobs.broker)."""

    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(settings, sessionmaker)
        self.broker = make_broker(settings, worker=False)
        self.kicker = run_job_kicker(self.broker)

    async def hand_over(self, ids: list[uuid.UUID]) -> None:
        try:
            for job_id in ids:
                await self.kicker.kiq(str(job_id))
        except Exception as error:
            logger.warning("jobs_hand_over_failed", error=repr(error), jobs=len(ids))
            with contextlib.suppress(Exception):  # if this fails too, the sweep still comes
                async with self.sessionmaker() as session:
                    await outbox_repository.make_due(session, ids)
                    await session.commit()

    async def close(self) -> None:
        await super().close()
        await self.broker.shutdown()


class InProcessJobQueue(JobQueue):
    """Without REDIS_URL (development): this process runs the jobs, and sweeps for due ones."""

    def __init__(
        self,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        tracing: Tracing | None = None,
    ) -> None:
        super().__init__(settings, sessionmaker)
        tracer = tracing.tracer("app.jobs") if tracing else None
        self.runner = JobRunner(settings, sessionmaker, build_sender(settings, tracer), tracer)
        self._sweepers: list[asyncio.Task[None]] = []

    async def hand_over(self, ids: list[uuid.UUID]) -> None:
        for job_id in ids:
            self._spawn(self.runner.run(job_id))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._sweepers = [
            loop.create_task(self._sweep_forever()),
            loop.create_task(self._retain_forever()),
        ]

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.JOB_SWEEP_INTERVAL_SECONDS)
            try:
                await sweep(self.settings, self.sessionmaker, self.hand_over)
            except Exception as error:  # the database is down: try again next time
                logger.warning("jobs_sweep_failed", error=repr(error))

    async def _retain_forever(self) -> None:
        """The worker's retention sweep, here because this process is the worker."""
        while True:
            await asyncio.sleep(self.settings.RETENTION_INTERVAL_SECONDS)
            try:
                await sweep_retention(self.settings, self.sessionmaker)
            except Exception as error:  # the database is down: the next round deletes it
                logger.warning("retention_sweep_failed", error=repr(error))

    async def close(self) -> None:
        for sweeper in self._sweepers:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        await super().close()


def build_queue(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    tracing: Tracing | None = None,
) -> JobQueue:
    if settings.REDIS_URL:
        return RedisJobQueue(settings, sessionmaker)
    return InProcessJobQueue(settings, sessionmaker, tracing)
