"""The retention sweep: finished jobs, spent account tokens and ended sessions are deleted
RETENTION_DAYS after they ended, stored idempotency answers once their 24 h are over.

Run by the worker (and, without REDIS_URL, by the API process, which then is the worker) every
RETENTION_INTERVAL_SECONDS; never in a request's path. Each batch is its own short transaction.
"""

import time
from datetime import timedelta
from typing import Final

import structlog
from opentelemetry.instrumentation.utils import suppress_instrumentation
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.jobs import metrics
from app.models.base import utc_now
from app.repositories import retention_repository
from app.services.idempotency import KEY_LIFETIME

logger = structlog.get_logger("app.jobs")

BATCH: Final = 1000  # rows per DELETE: milliseconds of locks, whatever the backlog


async def sweep_retention(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], *, batch: int = BATCH
) -> dict[str, int]:
    """Delete what has served its time; how many rows, by table."""
    started = time.monotonic()
    now = utc_now()
    retained = now - timedelta(days=settings.RETENTION_DAYS)
    deleted: dict[str, int] = {}
    for table, delete_batch in retention_repository.SWEEPS.items():
        before = now - KEY_LIFETIME if table == "idempotency_keys" else retained
        total = 0
        while True:
            with suppress_instrumentation():  # housekeeping: no trace of its own
                async with sessionmaker() as session:
                    count = await delete_batch(session, before, batch)
                    await session.commit()
            total += count
            if count < batch:
                break
        deleted[table] = total
        metrics.RETENTION_DELETED.labels(table=table).inc(total)
    logger.info("retention_swept", seconds=round(time.monotonic() - started, 3), **deleted)
    return deleted
