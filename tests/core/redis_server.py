"""The redis-server binary for tests that start a Redis of their own (`tests.servers`)."""

import shutil

from tests.conftest import missing


def redis_server_binary() -> str:
    """The redis-server executable; the test skips without one (fails when it is required)."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server", "apt-get install redis-server")
    return binary
