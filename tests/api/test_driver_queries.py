"""DriverQuery (asyncpg directly on PostgreSQL): the same rows and error answers as SQLAlchemy's."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Float, Integer, bindparam, func, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.dependencies import ReadConnectionDep
from app.models import Item, User
from app.repositories.driver import DriverQuery
from tests.api.test_database_errors import is_postgresql
from tests.conftest import _ClientContext

ITEMS = DriverQuery(
    select(Item.id, Item.title, Item.description, Item.owner_id, Item.created_at)
    .where(Item.owner_id == bindparam("owner_id"))
    .order_by(Item.created_at.desc())
    .limit(bindparam("limit"))
)


def describe(rows: Any) -> list[list[str]]:
    """Each value with its type, so that rows from both paths compare exactly."""
    return [[f"{type(value).__name__}:{value!r}" for value in row] for row in rows]


async def test_rows_equal_sqlalchemys(
    app: FastAPI, client: httpx.AsyncClient, cleanup_engine: AsyncEngine
) -> None:
    owner = uuid.uuid4()
    async with cleanup_engine.begin() as conn:
        await conn.execute(
            User.__table__.insert(),
            {
                "id": owner,
                "email": "d@example.com",
                "hashed_password": "x",
                "is_active": True,
                "is_superuser": False,
                "created_at": datetime.now(UTC),
                "updated_at": datetime.now(UTC),
            },
        )
        for n in range(3):
            await conn.execute(
                Item.__table__.insert(),
                {
                    "id": uuid.uuid4(),
                    "title": f"t{n}",
                    "description": None if n else "d",
                    "owner_id": owner,
                    "created_at": datetime(2026, 1, 1, n, tzinfo=UTC),
                    "updated_at": datetime(2026, 1, 1, n, tzinfo=UTC),
                },
            )

    @app.get("/_test/both")
    async def both(connection: ReadConnectionDep) -> dict[str, Any]:
        params = {"owner_id": owner, "limit": 2}
        driver = await ITEMS.fetch(connection, params)
        executed = (await connection.execute(ITEMS.statement, params)).all()
        return {
            "driver": describe(driver),
            "sqlalchemy": describe(executed),
            "uuid": [isinstance(row[0], uuid.UUID) for row in driver],
            "utc": [row[4].utcoffset().total_seconds() == 0 for row in driver],
        }

    answer = (await client.get("/_test/both")).json()
    assert len(answer["driver"]) == 2
    assert answer["uuid"] == [True, True]
    assert answer["utc"] == [True, True]
    # Same values; asyncpg's UUID is a subclass of uuid.UUID, so only its type name may differ.
    strip = [[value.split(":", 1)[1] for value in row] for row in answer["driver"]]
    assert strip == [[value.split(":", 1)[1] for value in row] for row in answer["sqlalchemy"]]


async def test_a_refused_statement_is_500(app: FastAPI, client: httpx.AsyncClient) -> None:
    if not is_postgresql(app):
        pytest.skip("other databases run the statement through SQLAlchemy (tested there)")
    divide = DriverQuery(select(literal(1) / bindparam("zero", type_=Integer)))

    @app.get("/_test/divide")
    async def refused(connection: ReadConnectionDep) -> None:
        await divide.fetch(connection, {"zero": 0})

    response = await client.get("/_test/divide")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"


async def test_a_statement_timeout_is_503(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    settings = make_settings(DATABASE_STATEMENT_TIMEOUT_MS=100)
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("statement_timeout is PostgreSQL's")
    sleep = DriverQuery(select(func.pg_sleep(bindparam("seconds", type_=Float))))
    context = make_client(settings)
    async with context as client:

        @context.app.get("/_test/sleep")
        async def slow(connection: ReadConnectionDep) -> None:
            await sleep.fetch(connection, {"seconds": 2.0})

        response = await client.get("/_test/sleep")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


async def test_a_lost_connection_is_503_and_never_reused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    if not is_postgresql(app):
        pytest.skip("other databases run the statement through SQLAlchemy (tested there)")
    one = DriverQuery(select(bindparam("n", type_=Integer)))
    drivers: list[Any] = []

    @app.get("/_test/lost")
    async def lost(connection: ReadConnectionDep) -> None:
        await one.fetch(connection, {"n": 1})
        drivers.append((await connection.get_raw_connection()).driver_connection)
        if len(drivers) == 1:  # the first request's connection drops mid-request
            drivers[0].terminate()
            await one.fetch(connection, {"n": 2})

    first = await client.get("/_test/lost")
    assert first.status_code == 503
    assert first.json()["error"] == "service_unavailable"
    for _ in range(12):  # more than the pool holds: none of them gets the dead connection
        assert (await client.get("/_test/lost")).status_code == 200
    assert all(driver is not drivers[0] for driver in drivers[1:])
