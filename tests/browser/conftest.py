"""The browser tests drive a real server through headless Chromium: one migrated SQLite file is
all the database they need, and their servers use ports 18500-18599."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_SECRET_KEY, missing, reset_schema
from tests.servers import free_port, stop, wait_until_answering

PORT_RANGE = range(18500, 18600)
# CI sets REQUIRE_BROWSER=1: a missing Chromium is then a failure, never a skip.
REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"
# Debian's `chromium` first (what CI installs), then its headless-only build.
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-headless-shell")


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('browser') / 'browser.db'}"
    await reset_schema(url)
    return url


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """The Chromium binary: CHROMIUM_PATH if set, else the first Debian one found."""
    explicit = os.environ.get("CHROMIUM_PATH")
    candidates = (explicit,) if explicit else CHROMIUM_CANDIDATES
    found = next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)
    if found is None:
        how = "apt-get install chromium, or set CHROMIUM_PATH"
        missing("Chromium", how, required=REQUIRE_BROWSER)
    return found


@pytest.fixture(scope="session")
def live_server(
    chromium_path: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`uvicorn app.main:app` (one process, docs on) on a free port; yields its base URL.

    It asks for `chromium_path` so that, with no browser, the tests skip before a server starts.
    """
    repo_dir = Path(__file__).resolve().parents[2]
    log_path = tmp_path_factory.mktemp("browser-server") / "server.log"
    port = free_port(PORT_RANGE)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "CORS_ORIGINS", "API_V1_PREFIX", "TRUSTED_PROXIES"}
    }
    env.update(
        ENVIRONMENT="test",
        DOCS_ENABLED="true",
        DATABASE_URL=database_url,
        SECRET_KEY=TEST_SECRET_KEY,
        RATE_LIMIT_REQUESTS="100000",
        AUTH_RATE_LIMIT_REQUESTS="100000",
        LOG_FORMAT="json",
    )
    command = [sys.executable, "-m", "uvicorn", "app.main:app", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-server-header", "--no-proxy-headers"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=repo_dir, env=env, stdout=log, stderr=log)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(f"{base_url}/health/live", process, log_path)
        yield base_url
    finally:
        stop(process)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """`test-artifacts/` at the repo root (git-ignored): screenshots a reviewer can open."""
    path = Path(__file__).resolve().parents[2] / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def chromium_args() -> list[str]:
    return [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
