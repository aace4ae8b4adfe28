"""`python -m app worker` in a subprocess, for tests and drills."""

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

from tests import servers
from tests.conftest import TEST_SECRET_KEY
from tests.mailbox import PORTS

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def worker_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    # Coverage's `patch = ["subprocess"]` measures the worker through these.
    env |= {key: value for key, value in os.environ.items() if key.startswith("COVERAGE_")}
    env |= {
        "ENVIRONMENT": "test",
        "SECRET_KEY": TEST_SECRET_KEY,
        "LOG_FORMAT": "json",
        "JOB_SWEEP_INTERVAL_SECONDS": "0.5",
        **extra,
    }
    return env


@contextmanager
def running_worker(log_dir: Path, name: str = "worker", **env: str) -> Iterator[Worker]:
    """A worker that answers its liveness probe; stopped (SIGTERM, then SIGKILL) afterwards."""
    port = servers.free_port(PORTS)
    log = log_dir / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "app", "worker"],
            cwd=REPO_ROOT,
            env=worker_env(WORKER_HEALTH_PORT=str(port), **env),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, port, log)
    try:
        servers.wait_until_answering(f"{worker.health_url}/health/live", process, log)
        yield worker
    finally:
        if process.poll() is None:
            servers.stop(process)


def wait_for_exit(worker: Worker, seconds: float) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        code = worker.process.poll()
        if code is not None:
            return code
        time.sleep(0.05)
    with suppress(ProcessLookupError):
        worker.process.kill()
    raise AssertionError(f"worker still running after {seconds} s:\n{worker.log_text()[-2000:]}")


def samples(worker: Worker) -> dict[str, float]:
    """The worker's /metrics: each sample line's name with labels, and its value."""
    text = httpx.get(f"{worker.health_url}/metrics", timeout=5).text
    lines = [line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#")]
    return {name: float(value) for name, value in lines if name}
