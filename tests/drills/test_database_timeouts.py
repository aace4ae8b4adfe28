"""A statement the server never finishes: asyncpg's `command_timeout` (a bare TimeoutError)
reaches the app as an OperationalError (the 503 envelope), and the pool stays usable."""

import pytest
from sqlalchemy import exc, text

from app.config import load_settings
from app.core import database
from tests.drills.harness import Stack


async def test_command_timeout_is_an_operational_error(stack: Stack) -> None:
    settings = load_settings(
        _env_file=None, DATABASE_URL=stack.postgres.url, DATABASE_STATEMENT_TIMEOUT_MS=200
    )
    engine = database.create_engine(settings)  # command_timeout: 0.2 s + 1 s
    try:
        async with engine.connect() as connection:
            # The server-side statement_timeout would cancel first: lift it for this session.
            await connection.execute(text("SET statement_timeout = 0"))
            with pytest.raises(exc.OperationalError) as raised:
                await connection.execute(text("SELECT pg_sleep(5)"))
        assert isinstance(raised.value.orig, TimeoutError)
        async with engine.connect() as connection:  # the timed-out connection was dropped
            assert (await connection.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
