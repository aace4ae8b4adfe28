"""The Redis side of the queue: taskiq's Redis Streams broker (acknowledged delivery).

Why Streams and not taskiq-redis's list brokers: a list pop hands the message over for good, so
a worker killed mid-job loses it; a stream entry stays pending in the consumer group until the
worker acknowledges it (after the job ran), and XAUTOCLAIM gives it to another worker once it
has been idle for `idle_timeout`.
"""

from typing import Final

from taskiq.kicker import AsyncKicker
from taskiq_redis import RedisStreamBroker

from app.config import Settings

RUN_JOB: Final = "keel.run_job"
STREAM: Final = "keel:jobs"
GROUP: Final = "keel-workers"
# The API hands over in a background task; a paused Redis must not keep it for long (the sweep
# hands over what failed). The worker's reads block for 2 s, so its timeout is longer.
HAND_OVER_TIMEOUT_SECONDS: Final = 2.0
WORKER_SOCKET_TIMEOUT_SECONDS: Final = 10.0
STREAM_MAX_LENGTH: Final = 100_000  # acknowledged entries stay in a stream until trimmed


def make_broker(settings: Settings, *, worker: bool) -> RedisStreamBroker:
    assert settings.REDIS_URL, "the Redis broker needs REDIS_URL"
    timeout = WORKER_SOCKET_TIMEOUT_SECONDS if worker else HAND_OVER_TIMEOUT_SECONDS
    redeliver_ms = int(settings.job_redeliver_seconds * 1000)
    return RedisStreamBroker(
        settings.REDIS_URL,
        queue_name=STREAM,
        consumer_group_name=GROUP,
        # "0", not taskiq's "$": a group created after jobs were queued still gets them.
        consumer_id="0",
        idle_timeout=redeliver_ms,
        # taskiq-redis #131: without a timeout, a worker killed while holding the reclaim lock
        # blocks every other worker's reclaiming for good.
        unacknowledged_lock_timeout=settings.job_redeliver_seconds,
        unacknowledged_batch_size=settings.WORKER_CONCURRENCY,
        xread_count=settings.WORKER_CONCURRENCY,
        maxlen=STREAM_MAX_LENGTH,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
    )


def run_job_kicker(broker: RedisStreamBroker) -> AsyncKicker[[str], None]:
    """Sends `RUN_JOB(job_id)`; the worker registers the function under that name."""
    return AsyncKicker(task_name=RUN_JOB, broker=broker, labels={})
