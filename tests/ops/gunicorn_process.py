"""Start the real production server (the Dockerfile's CMD) in a subprocess for a test."""

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from app import migrations
from tests import servers

REPO_ROOT = Path(__file__).resolve().parents[2]
PORTS = range(18200, 18300)  # this project's share of the machine's test ports
START_LIMIT_SECONDS = 60
SECRET_KEY = "ops-test-secret-key-0123456789-abcdefghijklmnop"
# Production refuses to start without them; nothing listens on this SMTP port unless a test
# (the jobs drills) overrides them with its own server's.
PRODUCTION_EMAIL = {
    "SMTP_HOST": "127.0.0.1",
    "SMTP_PORT": "1",
    "SMTP_SECURITY": "none",
    "EMAIL_FROM": "Keel <no-reply@example.com>",
    "FRONTEND_URL": "https://app.example.com",
}


def dockerfile_instruction(name: str) -> list[str]:
    """The exec-form JSON array of a Dockerfile instruction (CMD, or HEALTHCHECK's CMD)."""
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            argv: list[str] = json.loads(line[line.index("[") :])
            return argv
    raise AssertionError(f"no {name} in Dockerfile")


def free_port(ports: range = PORTS) -> int:
    return servers.free_port(ports)


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    base_url: str
    env: dict[str, str]
    log: Path
    metrics_dir: Path

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines()


def server_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """A production-like environment (on a migrated SQLite file unless `extra` names a
    DATABASE_URL); nothing inherited from pytest."""
    database = extra.get("DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'keel.db'}"
    if "DATABASE_URL" not in extra:
        migrations.upgrade(database)
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    env |= {
        "ENVIRONMENT": "production",
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": database,
        "BIND": f"127.0.0.1:{port}",
        "WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        **PRODUCTION_EMAIL,
    }
    return env | extra


@contextmanager
def running_gunicorn(
    tmp_path: Path, app: str = "app.main:app", ports: range = PORTS, **extra: str
) -> Iterator[Gunicorn]:
    """Run the Dockerfile's CMD (optionally on another app), wait until ready, stop it after."""
    port = free_port(ports)
    env = server_env(tmp_path, port, **extra)
    argv = dockerfile_instruction("CMD")
    argv[-1] = app
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as output:
        # Its own process group: teardown can then reach workers a dead master left behind.
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=output, stderr=output, start_new_session=True
        )
    server = Gunicorn(process, f"http://127.0.0.1:{port}", env, log, tmp_path / "metrics")
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop gracefully; then make sure no worker outlives the test (Uvicorn workers don't
    notice their master's death on their own)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=START_LIMIT_SECONDS)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _wait_ready(server: Gunicorn) -> None:
    deadline = time.monotonic() + START_LIMIT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"gunicorn exited early:\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.base_url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"gunicorn not ready:\n{server.log.read_text()}")
