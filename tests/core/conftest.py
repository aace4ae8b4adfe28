"""The edge's tests do not depend on the database engine: one migrated SQLite file serves them
all, instead of the SQLite + PostgreSQL pair the API tests run on."""

from pathlib import Path

import pytest

from tests import servers
from tests.conftest import reset_schema

PORT_RANGE = range(18100, 18200)  # the ports this suite's servers may use


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('edge') / 'edge.db'}"
    await reset_schema(url)
    return url


def free_port() -> int:
    return servers.free_port(PORT_RANGE)


@pytest.fixture
def repo_dir() -> Path:
    return Path(__file__).resolve().parents[2]
