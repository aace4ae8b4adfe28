"""The limiter's fixed windows: each hit is one atomic count, on memory and on Redis."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from app.config import Settings
from app.core.rate_limit import Policy, RateLimiter
from tests.conftest import TEST_SECRET_KEY
from tests.core.test_rate_limit import clear_keys

HOUR = 3600


def limiter_settings(redis_url: str | None) -> Settings:
    return Settings(  # type: ignore[call-arg]  # pydantic-settings' own keyword
        _env_file=None, ENVIRONMENT="test", SECRET_KEY=TEST_SECRET_KEY, REDIS_URL=redis_url
    )


async def start_of_window(seconds: int, *, margin: float = 0.05) -> None:
    """Sleep until just after a window starts, so a short test never straddles two windows."""
    await asyncio.sleep(seconds - time.time() % seconds + margin)


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[RateLimiter]:
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        clear_keys(url)
    limiter = RateLimiter(limiter_settings(url))
    await limiter.open()
    try:
        yield limiter
    finally:
        await limiter.close()


async def test_concurrent_hits_each_see_their_own_count(limiter: RateLimiter) -> None:
    policy = Policy.per_window("burst", 10, HOUR)
    decisions = await asyncio.gather(*(limiter.hit(policy, "user", "ann") for _ in range(25)))
    allowed = [decision for decision in decisions if decision.allowed]
    # Counting and reading the budget are one step: no two hits report the same remainder.
    assert sorted(decision.remaining for decision in allowed) == list(range(10))
    assert all(decision.remaining == 0 for decision in decisions if not decision.allowed)
    assert all(1 <= decision.reset_seconds <= HOUR for decision in decisions)


async def test_a_new_window_starts_from_zero(limiter: RateLimiter) -> None:
    policy = Policy.per_window("short", 2, 1)
    await start_of_window(1)
    first = [await limiter.hit(policy, "ip", "192.0.2.1") for _ in range(3)]
    other_key = await limiter.hit(policy, "ip", "192.0.2.2")
    await start_of_window(1)
    next_window = await limiter.hit(policy, "ip", "192.0.2.1")
    assert [decision.allowed for decision in first] == [True, True, False]
    assert [decision.remaining for decision in first] == [1, 0, 0]
    assert first[2].headers()["Retry-After"] == "1"  # the rest of this one-second window
    assert other_key.allowed
    assert next_window.allowed
    assert next_window.remaining == 1


async def test_workers_sharing_redis_share_one_count(redis_url: str) -> None:
    clear_keys(redis_url)
    workers = [RateLimiter(limiter_settings(redis_url)) for _ in range(2)]
    for worker in workers:
        await worker.open()
    try:
        policy = Policy.per_window("default", 20, HOUR)
        decisions = []
        for _ in range(5):  # small concurrent batches: well within each worker's Redis pool
            hits = [workers[n % 2].hit(policy, "user", "bob") for n in range(10)]
            decisions += await asyncio.gather(*hits)
        assert all(worker.backend == "redis" for worker in workers)
    finally:
        for worker in workers:
            await worker.close()
    allowed = [decision for decision in decisions if decision.allowed]
    # 20 allowed in all, not 20 per worker, each with its own remainder.
    assert sorted(decision.remaining for decision in allowed) == list(range(policy.limit))
