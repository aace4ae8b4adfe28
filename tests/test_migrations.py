"""Migrations go up, down and up again, and match the models exactly, on both databases."""

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app import migrations
from app.models import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


@pytest.mark.usefixtures("_clean_tables")
async def test_round_trip_and_no_drift(database_url: str) -> None:
    config = migrations.alembic_config(database_url)
    engine = create_async_engine(database_url)
    try:
        await asyncio.to_thread(command.downgrade, config, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        await asyncio.to_thread(command.upgrade, config, "head")
        async with engine.connect() as conn:
            assert {"users", "items", "sessions"} <= await conn.run_sync(_tables)
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


NEW_MODEL_REVISION = """
import os
import sys

import sqlalchemy as sa
from alembic import command

from app import migrations
from app.models import Base

database_url, version_path = sys.argv[1:]
config = migrations.alembic_config(database_url)
command.upgrade(config, "head")
sa.Table(
    "keel_migration_probe",  # a name no forker's model will take (not the README's `orders`)
    Base.metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("owner_id", sa.ForeignKey("users.id", ondelete="CASCADE"), index=True),
    sa.Column("total", sa.Numeric(10, 2), nullable=False),
    sa.Column("note", sa.Text()),
)
locations = os.pathsep.join([f"{config.get_main_option('script_location')}/versions", version_path])
config.set_main_option("version_locations", locations)
command.revision(config, message="add probe", autogenerate=True, version_path=version_path)
"""


def test_a_new_models_migration_is_lint_clean(tmp_path: Path) -> None:
    """What `make migration name=…` writes passes `make lint` as it stands (template + hooks)."""
    root = Path(__file__).resolve().parents[1]
    # Inside the repository, so that ruff reads the project's own configuration.
    versions = Path(tempfile.mkdtemp(prefix=".new-revision-", dir=root))
    try:
        url = f"sqlite+aiosqlite:///{tmp_path / 'keel.db'}"
        subprocess.run(
            [sys.executable, "-c", NEW_MODEL_REVISION, url, str(versions)],
            cwd=root,
            check=True,
            capture_output=True,
            timeout=120,
        )
        (written,) = versions.glob("*_add_probe.py")
        source = written.read_text()
        assert 'op.create_table(\n        "keel_migration_probe",' in source
        assert "op.drop_table(" in source
        ruff = [str(Path(sys.executable).parent / "ruff")]
        for check in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
            result = subprocess.run(
                [*ruff, *check, str(written)], cwd=root, capture_output=True, text=True, check=False
            )
            assert result.returncode == 0, result.stdout + result.stderr
    finally:
        shutil.rmtree(versions)


@pytest.mark.usefixtures("_clean_tables")
async def test_a_migration_waiting_for_a_lock_gives_up_with_a_clear_error(
    database_url: str,
) -> None:
    """An ALTER TABLE behind a long transaction would queue every request behind it: the
    migration waits at most its lock_timeout, tries again, then fails saying why."""
    if not database_url.startswith("postgresql"):
        pytest.skip("lock_timeout is PostgreSQL's")
    await asyncio.to_thread(migrations.downgrade, database_url, "0002")
    holder = create_async_engine(database_url)
    try:
        async with holder.connect() as conn:
            await conn.exec_driver_sql("SELECT count(*) FROM users")  # holds ACCESS SHARE
            started = time.monotonic()
            with pytest.raises(migrations.MigrationLocked, match="lock_timeout"):
                await asyncio.wait_for(
                    asyncio.to_thread(
                        migrations.upgrade,
                        database_url,
                        lock_timeout_ms=200,
                        attempts=2,
                        pause_seconds=0.1,
                    ),
                    timeout=20,
                )
            assert time.monotonic() - started < 5
            await conn.rollback()
    finally:
        await holder.dispose()
    await asyncio.to_thread(migrations.upgrade, database_url)  # nothing holds it now


def test_migrate_waits_for_a_database_that_is_not_answering_yet(tmp_path: Path) -> None:
    """Compose's first `up`: PostgreSQL still initialising. `migrate` retries, then fails."""
    url = "postgresql+asyncpg://keel@127.0.0.1:1/keel"  # nothing listens there
    started = time.monotonic()
    with pytest.raises(migrations.DatabaseUnreachable):
        migrations.upgrade(url, wait_seconds=1.5, pause_seconds=0.2)
    assert 1.0 < time.monotonic() - started < 10  # retried until the wait was (nearly) over
