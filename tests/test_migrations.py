"""Migrations go up, down and up again, and match the models exactly, on both databases."""

import asyncio
import shutil
import subprocess
import sys
import tempfile
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
