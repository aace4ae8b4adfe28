"""Run Alembic from Python (CLI, tests): the same migrations as `alembic upgrade head`.

Two things an operator needs from a migration step that Alembic does not do on its own:

- **A bounded wait for locks.** An `ALTER TABLE` queued behind a long transaction holds up every
  query that arrives after it, so the whole API stalls. Each attempt runs with PostgreSQL's
  `lock_timeout` (LOCK_TIMEOUT_MS) and is tried again a few times (the whole upgrade is one
  transaction on PostgreSQL, so a failed attempt leaves nothing half done); then it fails with
  `MigrationLocked`, saying so.
- **Waiting for the database.** Started beside a database that is still initialising (Compose's
  first `up`, a cluster's first minutes), `migrate` retries until it answers, for
  `wait_seconds`; then it fails with `DatabaseUnreachable`.
"""

import time
from pathlib import Path
from typing import Final

import structlog
from alembic import command
from alembic.config import Config
from sqlalchemy import exc

ALEMBIC_INI = Path(__file__).resolve().parents[1] / "alembic.ini"
LOCK_TIMEOUT_MS: Final = 5000
LOCK_ATTEMPTS: Final = 3
WAIT_SECONDS: Final = 60.0  # for the database to answer at all
PAUSE_SECONDS: Final = 2.0
LOCK_NOT_AVAILABLE: Final = "55P03"  # SQLSTATE of a lock_timeout

logger = structlog.get_logger("app.migrations")


class MigrationLocked(RuntimeError):
    """The migration could not take its locks within lock_timeout, attempt after attempt."""


class DatabaseUnreachable(RuntimeError):
    """The database did not answer within the wait."""


def alembic_config(
    database_url: str | None = None, *, lock_timeout_ms: int = LOCK_TIMEOUT_MS
) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["configure_logger"] = False
    config.attributes["lock_timeout_ms"] = lock_timeout_ms
    if database_url:
        config.attributes["database_url"] = database_url
    return config


def _sqlstate(error: BaseException) -> str | None:
    original = error.orig if isinstance(error, exc.DBAPIError) else error
    sqlstate = getattr(original, "sqlstate", None)
    return sqlstate if isinstance(sqlstate, str) else None


def upgrade(
    database_url: str | None = None,
    revision: str = "head",
    *,
    lock_timeout_ms: int = LOCK_TIMEOUT_MS,
    attempts: int = LOCK_ATTEMPTS,
    wait_seconds: float = WAIT_SECONDS,
    pause_seconds: float = PAUSE_SECONDS,
) -> None:
    """Blocking: call it from a thread when an event loop is running."""
    config = alembic_config(database_url, lock_timeout_ms=lock_timeout_ms)
    deadline = time.monotonic() + wait_seconds
    locked = 0
    while True:
        try:
            command.upgrade(config, revision)
            return
        except (exc.DBAPIError, OSError) as error:
            if _sqlstate(error) == LOCK_NOT_AVAILABLE:
                locked += 1
                if locked >= attempts:
                    raise MigrationLocked(
                        f"migration to {revision} gave up: {attempts} attempts could not take "
                        f"their locks within lock_timeout ({lock_timeout_ms} ms); a long "
                        "transaction holds a table it alters (docs/runbook.md)"
                    ) from error
                logger.warning("migration_lock_timeout", attempt=locked, retry_in=pause_seconds)
            elif isinstance(error, exc.DBAPIError) and _sqlstate(error) is not None:
                raise  # the database answered and refused: retrying changes nothing
            elif time.monotonic() + pause_seconds > deadline:
                raise DatabaseUnreachable(
                    f"the database did not answer for {wait_seconds:.0f} s: {error!r}"
                ) from error
            else:
                logger.warning("migration_database_unreachable", error=repr(error))
        time.sleep(pause_seconds)


def downgrade(database_url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)
