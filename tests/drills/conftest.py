"""One throwaway PostgreSQL cluster and redis-server for every test of this package."""

from collections.abc import Iterator

import pytest

from tests.drills import harness
from tests.drills.harness import Stack


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    with harness.stack() as services:
        yield services
