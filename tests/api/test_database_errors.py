"""Only a database outage is a 503: a statement the database refuses is a bug, answered 500."""

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, insert, make_url, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.dependencies import ReadConnectionDep, ReadSessionDep, SessionDep
from app.models import User


def is_postgresql(app: FastAPI) -> bool:
    return str(app.state.settings.database_url).startswith("postgresql")


async def test_a_refused_statement_is_500_not_an_outage(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # PostgreSQL: division_by_zero (SQLSTATE 22012, a data exception). SQLite: two statements
    # in one call (sqlite3.ProgrammingError). Both are DBAPIErrors that no retry would cure.
    statement = "SELECT 1 / 0" if is_postgresql(app) else "SELECT 1; SELECT 2"

    @app.post("/_test/refused")
    async def refused(session: SessionDep) -> None:
        await session.execute(text(statement))

    response = await client.post("/_test/refused")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert response.json()["message"] == "Internal server error"
    assert "retry-after" not in response.headers


async def test_a_value_out_of_range_is_500_not_an_outage(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    if not is_postgresql(app):
        pytest.skip("SQLite stores any integer; its OverflowError is not a database error")

    @app.post("/_test/overflow")
    async def overflow(session: SessionDep) -> None:
        await session.execute(text("SELECT CAST(:big AS integer)"), {"big": "99999999999"})

    response = await client.post("/_test/overflow")
    assert response.status_code == 500
    assert "retry-after" not in response.headers


async def test_a_statement_timeout_is_an_outage(app: FastAPI, client: httpx.AsyncClient) -> None:
    if not is_postgresql(app):
        pytest.skip("statement_timeout is PostgreSQL's")

    @app.post("/_test/slow")
    async def slow(session: SessionDep) -> None:
        await session.execute(text("SET LOCAL statement_timeout = 50"))
        await session.execute(text("SELECT pg_sleep(2)"))

    response = await client.post("/_test/slow")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert response.headers["retry-after"] == "5"


def _integers(node: Any) -> list[dict[str, Any]]:
    """Every integer schema inside a JSON-schema fragment."""
    found: list[dict[str, Any]] = []
    if isinstance(node, dict):
        if node.get("type") == "integer":
            found.append(node)
        for value in node.values():
            found += _integers(value)
    elif isinstance(node, list):
        for value in node:
            found += _integers(value)
    return found


async def test_every_integer_a_client_sends_is_bounded(client: httpx.AsyncClient) -> None:
    """No request can carry an integer the database would refuse or overflow on."""
    document = (await client.get("/api/v1/openapi.json")).json()
    schemas = document["components"]["schemas"]
    inputs: list[Any] = []
    for operations in document["paths"].values():
        for operation in operations.values():
            inputs += [parameter["schema"] for parameter in operation.get("parameters", [])]
            for media in operation.get("requestBody", {}).get("content", {}).values():
                reference = media["schema"].get("$ref", "")
                inputs.append(schemas[reference.rsplit("/", 1)[-1]] if reference else media)
    integers = _integers(inputs)
    assert integers, "the API takes no integer at all: this test checks nothing"
    for schema in integers:
        assert "maximum" in schema or "exclusiveMaximum" in schema, schema
        assert "minimum" in schema or "exclusiveMinimum" in schema, schema


async def test_a_write_through_a_read_connection_or_session_fails_loudly(
    app: FastAPI, client: httpx.AsyncClient, cleanup_engine: AsyncEngine
) -> None:
    """Reads run without a transaction, so they must never write: ORM, Core, or on the
    connection itself. Each write below would succeed (and, in autocommit, stay) otherwise."""

    def user(name: str) -> dict[str, str]:
        return {"email": f"{name}@sneaked.example.com", "hashed_password": "x"}

    @app.post("/_test/orm-write")
    async def orm_write(session: ReadSessionDep) -> None:
        session.add(User(**user("orm"), is_active=True, is_superuser=False))
        await session.flush()

    @app.post("/_test/core-write")
    async def core_write(session: ReadSessionDep) -> None:
        await session.execute(insert(User).values(**user("core")))

    @app.post("/_test/connection-write")
    async def connection_write(connection: ReadConnectionDep) -> None:
        await connection.execute(insert(User).values(**user("connection")))

    sneaked = select(func.count()).where(User.email.like("%@sneaked.example.com"))

    @app.get("/_test/read")
    async def read(connection: ReadConnectionDep) -> dict[str, int]:
        return {"users": await connection.scalar(sneaked) or 0}

    for path in ("/_test/orm-write", "/_test/core-write", "/_test/connection-write"):
        response = await client.post(path)
        assert response.status_code == 500, path
        assert response.json()["error"] == "internal_error"
    assert (await client.get("/_test/read")).json() == {"users": 0}
    async with cleanup_engine.connect() as connection:
        assert await connection.scalar(sneaked) == 0


@pytest.mark.parametrize(
    "target", ["no_such_role@127.0.0.1:5432/{db}", "postgres@127.0.0.1:5432/no_such_database"]
)
async def test_a_refused_connection_is_an_outage_not_a_bug(
    make_settings: Callable[..., Settings], make_client: Any, database_url: str, target: str
) -> None:
    """Unknown role (SQLSTATE 28000) or database (3D000): nothing a client can fix, so 503."""
    if not database_url.startswith("postgresql"):
        pytest.skip("connection refusals are PostgreSQL's")
    url = make_url(database_url)
    refused = f"postgresql+asyncpg://{target.format(db=url.database)}"
    async with make_client(make_settings(DATABASE_URL=refused)) as client:
        response = await client.post(
            "/api/v1/auth/register", json={"email": "a@example.com", "password": "pass-1234"}
        )
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"


async def test_a_failing_statement_logs_no_parameter_values(
    app: FastAPI, client: httpx.AsyncClient, capfd: pytest.CaptureFixture[str]
) -> None:
    """An email address or a token hash bound to a failing statement never reaches the log."""
    secret = "carol.private@example.com"
    statement = (
        "SELECT CAST(:value AS integer)" if is_postgresql(app) else "SELECT :value; SELECT 2"
    )

    @app.post("/_test/leaky")
    async def leaky(session: SessionDep) -> None:
        await session.execute(text(statement), {"value": secret})

    response = await client.post("/_test/leaky")
    assert response.status_code == 500
    logged = capfd.readouterr().err
    assert '"event":"database_error"' in logged
    assert "SELECT" in logged  # the statement and the stack are there to debug with
    assert "test_database_errors.py" in logged
    assert secret not in logged
