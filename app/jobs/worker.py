"""`python -m app worker`: runs the jobs handed over through Redis, sweeps the outbox, and
deletes what has served its time (app.jobs.retention).

SIGTERM (or SIGINT) stops taking jobs, lets the running ones finish (up to the job lease), and
exits 0; a job it could not finish is not acknowledged, so another worker gets it.
"""

import asyncio
import contextlib
import signal
import uuid
from typing import Final

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from taskiq.acks import AcknowledgeType
from taskiq_redis import RedisStreamBroker

from app.config import Settings
from app.core import database, error_reporting, metrics
from app.core.logging import configure_logging
from app.core.tracing import WORKER_SERVICE, Tracing, build_tracing
from app.emails.sender import build_sender
from app.jobs.broker import RUN_JOB, make_broker, run_job_kicker
from app.jobs.health import serve_health
from app.jobs.receiver import JobReceiver
from app.jobs.retention import sweep_retention
from app.jobs.runner import HandOver, JobRunner, sweep

logger = structlog.get_logger("app.worker")

RECONNECT_SECONDS: Final = 1.0
RECEIVER_STOP_SECONDS: Final = 5.0


async def run_worker(settings: Settings) -> None:
    configure_logging(settings)
    error_reporting.init(settings)  # Sentry, with SENTRY_DSN only
    engine = database.create_engine(settings)
    metrics.instrument_pool(engine)
    sessionmaker = database.create_sessionmaker(engine)
    tracing = build_tracing(settings, WORKER_SERVICE)  # None unless OTEL_EXPORTER_OTLP_ENDPOINT
    if tracing is not None:
        tracing.start(engine, redis=False)  # not Redis: its queue reads would be the traces
    tracer = tracing.tracer("app.jobs") if tracing else None
    runner = JobRunner(settings, sessionmaker, build_sender(settings, tracer), tracer)
    broker = make_broker(settings, worker=True)
    broker.is_worker_process = True
    kicker = run_job_kicker(broker)

    running: set[asyncio.Task[object]] = set()

    async def run_job(job_id: str) -> None:
        task = asyncio.current_task()  # taskiq's delivery task: it acknowledges after this
        assert task is not None
        running.add(task)
        try:
            await runner.run(uuid.UUID(job_id))
        finally:
            running.discard(task)

    broker.register_task(run_job, task_name=RUN_JOB)

    async def hand_over(ids: list[uuid.UUID]) -> None:
        for job_id in ids:
            await kicker.kiq(str(job_id))

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    receiving = asyncio.create_task(_receive(broker, settings, stop))
    sweeping = asyncio.create_task(_sweep(settings, sessionmaker, hand_over, stop))
    retaining = asyncio.create_task(_retain(settings, sessionmaker, stop))
    health = await serve_health(settings.WORKER_HEALTH_PORT, lambda: not receiving.done())
    logger.info(
        "worker_started",
        concurrency=settings.WORKER_CONCURRENCY,
        health_port=settings.WORKER_HEALTH_PORT,
        smtp=settings.SMTP_HOST or "none: emails are written to the log",
    )
    try:
        await stop.wait()
        logger.info("worker_stopping", running_jobs=len(running))
        # taskiq's receiver stops fetching and waits for its jobs; its stop can hang while a
        # Redis read is being cancelled, so it is bounded, and the jobs are waited for here.
        await asyncio.wait({receiving}, timeout=RECEIVER_STOP_SECONDS)
        if running:
            await asyncio.wait(set(running), timeout=settings.job_lease_seconds)
    finally:
        for task in (sweeping, retaining, receiving):
            task.cancel()
        await asyncio.wait({sweeping, retaining, receiving}, timeout=RECEIVER_STOP_SECONDS)
        health.close()
        await broker.shutdown()
        await _close(engine, tracing)
        logger.info("worker_stopped")


async def _close(engine: AsyncEngine, tracing: Tracing | None) -> None:
    metrics.release_pool(engine)
    await engine.dispose()
    if tracing is not None:
        tracing.shutdown()  # exports what is left
    error_reporting.close()


async def _receive(broker: RedisStreamBroker, settings: Settings, stop: asyncio.Event) -> None:
    """taskiq's receiver, started again after a Redis failure, until `stop` is set."""
    while not stop.is_set():
        try:
            await broker.startup()  # creates the consumer group if it does not exist yet
            receiver = JobReceiver(
                broker,
                max_async_tasks=settings.WORKER_CONCURRENCY,
                run_startup=False,
                ack_type=AcknowledgeType.WHEN_EXECUTED,  # acknowledged once the job has run
                wait_tasks_timeout=settings.job_lease_seconds,
            )
            await receiver.listen(stop)
            return
        except Exception as error:
            logger.warning("worker_redis_unavailable", error=repr(error))
            await _pause(stop, RECONNECT_SECONDS)


async def _sweep(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    hand_over: HandOver,
    stop: asyncio.Event,
) -> None:
    while not stop.is_set():
        try:
            await sweep(settings, sessionmaker, hand_over)
        except Exception as error:  # Redis or the database is down: the next sweep tries again
            logger.warning("jobs_sweep_failed", error=repr(error))
        await _pause(stop, settings.JOB_SWEEP_INTERVAL_SECONDS)


async def _retain(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], stop: asyncio.Event
) -> None:
    while not stop.is_set():
        try:
            await sweep_retention(settings, sessionmaker)
        except Exception as error:  # the database is down: the next round deletes it
            logger.warning("retention_sweep_failed", error=repr(error))
        await _pause(stop, settings.RETENTION_INTERVAL_SECONDS)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, but wake up at once when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
