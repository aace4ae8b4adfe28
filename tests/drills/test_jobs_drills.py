"""Drills 6-9 of `scripts/drills` (the background jobs), as CI runs them: real Gunicorn, real
workers, the throwaway PostgreSQL and redis-server, an aiosmtpd SMTP server."""

import pytest

from tests.drills import jobs
from tests.drills.harness import DrillResult, Stack

pytestmark = pytest.mark.timeout(180)


def passed(result: DrillResult) -> None:
    print(result.line())
    assert result.problems == []


async def test_redis_paused_during_a_reset_request(stack: Stack) -> None:
    result = await jobs.redis_paused_drill(stack, pause=3.0)
    passed(result)
    assert result.figures["emails_while_paused"] == 0


async def test_a_killed_worker_s_job_is_delivered_by_another(stack: Stack) -> None:
    result = await jobs.worker_killed_drill(stack)
    passed(result)
    assert result.figures["by"] == "redis-redelivery"


async def test_the_sweep_hands_over_what_a_killed_api_committed(stack: Stack) -> None:
    passed(await jobs.api_killed_drill(stack))


@pytest.mark.parametrize("code", [451, 550])
async def test_a_refusing_smtp_server_ends_in_a_recorded_failure(stack: Stack, code: int) -> None:
    result = await jobs.smtp_refusing_drill(stack, code)
    passed(result)
    assert (result.figures["retried"], result.figures["failed"]) == (2, 1)
