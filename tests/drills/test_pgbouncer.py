"""Drill 5 (slow database) through PgBouncer in transaction mode: the production server
(Gunicorn, 2 workers, FIRST_SUPERUSER_* set) behind Debian's PgBouncer, under steady load.

The statement timeout (1 s) has to fire through the pooler before the request deadline (3 s):
the drill's bound is the timeout's, so a 503 that only the deadline produced breaks it.
"""

from collections.abc import Iterator

import pytest

from tests.conftest import require_pgbouncer
from tests.drills import harness
from tests.drills.harness import Stack
from tests.pgbouncer import ThrowawayPgBouncer

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def pooler(stack: Stack) -> Iterator[ThrowawayPgBouncer]:
    require_pgbouncer()
    # Fewer server connections (8) than the two workers' pools may open (2 x 15).
    with ThrowawayPgBouncer(stack.postgres.url, default_pool_size=8) as pgbouncer:
        yield pgbouncer


async def test_slow_database_through_pgbouncer(stack: Stack, pooler: ThrowawayPgBouncer) -> None:
    env = {
        "DATABASE_URL": pooler.url(),
        "DATABASE_POOLER": "transaction",
        "DATABASE_DIRECT_URL": stack.postgres.url,
        "DATABASE_STATEMENT_TIMEOUT_MS": "1000",
        "REQUEST_TIMEOUT_SECONDS": "3",
        "FIRST_SUPERUSER_EMAIL": "root@example.com",
        "FIRST_SUPERUSER_PASSWORD": "root password 123",
    }
    with harness.keel(stack, **env) as server:
        result = await harness.slow_database_drill(
            stack, server, deadline=1.0, name="5 slow-db-pgbouncer"
        )
    print(result.line())
    assert result.problems == []
    assert result.figures["other_errors"] == 0
