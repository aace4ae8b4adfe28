"""The real server, two worker processes, one Redis: the limit is one limit, not one per worker."""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_SECRET_KEY
from tests.core.conftest import free_port
from tests.core.test_rate_limit import clear_keys
from tests.servers import stop

LIMIT = 20
REQUESTS = 48
PROBE = "/api/v1/_probe"


@pytest.fixture
def server(redis_url: str, tmp_path: Path, repo_dir: Path) -> Iterator[tuple[str, Path]]:
    """`uvicorn --workers 2` on a free port; yields its base URL and its log file."""
    clear_keys(redis_url)
    port = free_port()
    log_path = tmp_path / "server.log"
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "REDIS_URL": redis_url,
        "RATE_LIMIT_REQUESTS": str(LIMIT),
        "RATE_LIMIT_WINDOW_SECONDS": "3600",
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'server.db'}",
        "SECRET_KEY": TEST_SECRET_KEY,
        "LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--workers", "2"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-server-header"]
    command += ["--no-proxy-headers", "--no-access-log"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=repo_dir, env=env, stdout=log, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_live(base_url, process, log_path)
        yield base_url, log_path
    finally:
        stop(process)


def _wait_until_live(base_url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    """Until the server answers and both workers have finished starting (each logs it)."""
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        started = log_path.read_text().count("Application startup complete")
        try:
            live = httpx.get(f"{base_url}/health/live", timeout=1).status_code == 200
        except httpx.TransportError:
            live = False
        if live and started >= 2:
            return
        time.sleep(0.1)
    raise RuntimeError("server did not come up with two workers")


def _fresh_connection_get(url: str) -> httpx.Response:
    with httpx.Client(timeout=10) as client:  # a new connection for every request
        return client.get(url, headers={"Connection": "close"})


def test_two_workers_share_one_redis_limit(server: tuple[str, Path]) -> None:
    base_url, log_path = server
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(_fresh_connection_get, [base_url + PROBE] * REQUESTS))

    codes = [response.status_code for response in responses]
    assert codes.count(404) == LIMIT  # exactly the limit, not the limit per worker
    assert codes.count(429) == REQUESTS - LIMIT
    assert all("server" not in response.headers for response in responses)

    time.sleep(0.5)  # let the workers write their last access lines
    lines = [
        json.loads(line)
        for line in log_path.read_text().splitlines()
        if line.startswith("{") and '"event":"request"' in line
    ]
    probe_lines = [line for line in lines if line.get("path") == PROBE]
    assert len(probe_lines) == REQUESTS
    assert len({line["pid"] for line in probe_lines}) == 2  # both workers answered
