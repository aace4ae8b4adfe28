"""Migrations go up, down and up again, and match the models exactly, on both databases."""

import asyncio

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from app.core import migrations
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
