"""A database outage at start-up, with FIRST_SUPERUSER_* set (as the example Secret does): the
production server starts alive and not ready instead of crash-looping, and the superuser exists
once the database is back. A real Gunicorn and a real PostgreSQL that is down, then up."""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app import migrations
from tests import servers
from tests.drills.services import ThrowawayPostgres, find_postgres_bin
from tests.ops.gunicorn_process import (
    REPO_ROOT,
    _stop,
    dockerfile_instruction,
    free_port,
    server_env,
)

ADMIN = {"username": "root@keel.example.com", "password": "a long start-up password 42"}


@pytest.fixture
def stopped_postgres() -> Iterator[ThrowawayPostgres]:
    if find_postgres_bin() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found")
    postgres = ThrowawayPostgres()
    try:
        postgres.init()
        migrations.upgrade(postgres.url)
        postgres.stop()
        yield postgres
    finally:
        postgres.close()


def status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.TransportError:
        return None


def test_the_pod_waits_for_the_database_and_then_creates_the_superuser(
    tmp_path: Path, stopped_postgres: ThrowawayPostgres
) -> None:
    port = free_port()
    env = server_env(
        tmp_path,
        port,
        DATABASE_URL=stopped_postgres.url,
        FIRST_SUPERUSER_EMAIL=ADMIN["username"],
        FIRST_SUPERUSER_PASSWORD=ADMIN["password"],
    )
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            dockerfile_instruction("CMD"),
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    try:
        servers.wait_until_answering(f"{base}/health/live", process, log)
        time.sleep(3)  # long enough for a worker that failed to boot to take the master down
        assert process.poll() is None, log.read_text()[-3000:]
        assert status(f"{base}/health/live") == 200
        assert status(f"{base}/health/ready") == 503

        stopped_postgres.start()
        deadline = time.monotonic() + 30
        login = None
        while time.monotonic() < deadline:
            login = httpx.post(f"{base}/api/v1/auth/token", data=ADMIN, timeout=5)
            if login.status_code == 200:
                break
            time.sleep(0.5)
        assert login is not None
        assert login.status_code == 200, log.read_text()[-3000:]
        assert status(f"{base}/health/ready") == 200
        assert "Worker failed to boot" not in log.read_text()
    finally:
        _stop(process)
