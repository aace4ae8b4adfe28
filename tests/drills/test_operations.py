"""Drills 10 and 11 of `scripts/drills`, as they run there: PgBouncer replaced under load (no
request after it fails), and backup and restore with docs/runbook.md's own commands (every user
logs in on the restore and lists the items acknowledged before the dump)."""

import pytest

from tests.conftest import require_pgbouncer
from tests.drills import operations
from tests.drills.harness import Stack

pytestmark = pytest.mark.timeout(180)


async def test_pgbouncer_restart_under_load_fails_no_later_request(stack: Stack) -> None:
    require_pgbouncer()
    result = await operations.pgbouncer_restart_drill(stack)
    print(result.line())
    assert result.problems == []
    assert result.figures["503_after_quiet_restart"] == 0
    assert result.figures["503_after"] == 0


async def test_backup_restores_every_acknowledged_item(stack: Stack) -> None:
    result = await operations.backup_restore_drill(stack)
    print(result.line())
    assert result.problems == []
    assert result.figures["missing"] == 0
    assert result.figures["logins_200"] == "2/2"
