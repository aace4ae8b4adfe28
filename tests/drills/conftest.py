"""One throwaway PostgreSQL cluster and redis-server for every test of this package."""

import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import missing
from tests.drills import harness
from tests.drills.harness import Stack
from tests.drills.services import find_postgres_bin


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    if find_postgres_bin() is None:
        missing("PostgreSQL server binaries", "apt-get install postgresql, or set PG_BIN")
    if shutil.which("redis-server") is None:
        missing("redis-server", "apt-get install redis-server")
    with harness.stack() as services:
        yield services
