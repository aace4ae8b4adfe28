"""Drills 1, 2 and 4 of `scripts/drills`, shortened: the real production server (Gunicorn,
2 workers) on a throwaway PostgreSQL cluster and redis-server, under recorded load.

They need PostgreSQL's server binaries and redis-server: without them they skip, or fail when
REQUIRE_SERVICES=1 (CI).
The bounds checked (ready 503 within 2 s, 200 within 5 s of the return) are CONTRACT.md's own.
"""

from collections.abc import Iterator

import pytest

from tests.drills import harness
from tests.drills.harness import Stack
from tests.ops.gunicorn_process import Gunicorn

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def server(stack: Stack) -> Iterator[Gunicorn]:
    with harness.keel(stack) as keel:
        yield keel


async def test_postgres_outage_loses_no_acknowledged_write(stack: Stack, server: Gunicorn) -> None:
    result = await harness.postgres_drill(
        stack, server, mode="fast", outage=3.0, warmup=1.5, after=6.0
    )
    print(result.line())
    assert result.problems == []
    assert result.figures["lost"] == 0
    assert isinstance(result.figures["acked_writes"], int)
    assert result.figures["acked_writes"] > 0
    assert isinstance(result.figures["503_during_outage"], int)
    assert result.figures["503_during_outage"] > 0
    assert result.figures["other_errors"] == 0


async def test_redis_outage_falls_back_and_recovers(stack: Stack, server: Gunicorn) -> None:
    # `after` outlasts the limiter's 5 s pause before it tries Redis again.
    result = await harness.redis_drill(stack, server, outage=3.0, warmup=1.5, after=7.0)
    print(result.line())
    assert result.problems == []
    assert result.figures["5xx"] == 0
    assert result.figures["fallback_workers"] == "2/2"


async def test_sigterm_under_load_fails_nothing_and_exits_0(stack: Stack) -> None:
    with harness.keel(stack) as server:
        result = await harness.sigterm_drill(server, warmup=2.0)
    print(result.line())
    assert result.problems == []
    assert result.figures["exit_code"] == 0
    assert result.figures["failed_in_flight"] == 0
