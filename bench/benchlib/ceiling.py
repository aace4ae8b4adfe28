"""The ceiling from ../shared/bench: its virtualenv, seed, server and token, as its README says."""

from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from benchlib.processes import ProcessGroups, Server, wait_http_ok

VENV = Path("/tmp/ceiling-venv")  # noqa: S108 - the path the ceiling's README uses


@dataclass(frozen=True)
class Ceiling:
    bench_dir: Path  # .../shared/bench
    pg_dsn: str
    redis_url: str

    @property
    def env(self) -> dict[str, str]:
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
        env = {name: os.environ[name] for name in keep if name in os.environ}
        env.update(CEILING_PG_DSN=self.pg_dsn, CEILING_REDIS_URL=self.redis_url)
        return env

    @property
    def python(self) -> Path:
        return VENV / "bin" / "python"


def find_bench_dir(repo_root: Path) -> Path | None:
    """`../shared/bench` beside the repository (CI clones it there), if it holds the ceiling."""
    candidate = (repo_root / ".." / "shared" / "bench").resolve()
    return candidate if (candidate / "ceiling" / "app.py").is_file() else None


def ensure_venv(bench_dir: Path) -> str:
    """Create /tmp/ceiling-venv with the pinned requirements unless it already has them."""
    requirements = bench_dir / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    marker = VENV / ".requirements.sha256"
    if marker.is_file() and marker.read_text() == digest and (VENV / "bin" / "uvicorn").exists():
        return "reused"
    subprocess.run(["python3", "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "--quiet", "-r", str(requirements)], check=True
    )
    marker.write_text(digest)
    return "created"


def _run_script(ceiling: Ceiling, script: str) -> str:
    """Run one of the ceiling's own scripts with its settings; return what it printed."""
    done = subprocess.run(
        [str(ceiling.python), f"ceiling/{script}"],
        env=ceiling.env,
        cwd=ceiling.bench_dir,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()


def seed(ceiling: Ceiling) -> str:
    return _run_script(ceiling, "seed.py")


def start(groups: ProcessGroups, ceiling: Ceiling, port: int, log_dir: Path) -> Server:
    command: list[str | Path] = [
        VENV / "bin" / "uvicorn",
        "app:app",
        "--app-dir",
        "ceiling",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "2",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-server-header",
        "--no-proxy-headers",
    ]
    server = groups.spawn(
        "ceiling",
        command,
        env=ceiling.env,
        cwd=ceiling.bench_dir,
        log_path=log_dir / "ceiling.log",
        base_url=f"http://127.0.0.1:{port}",
    )
    wait_http_ok(server, "/health/live")
    return server


def mint_token(ceiling: Ceiling) -> str:
    return _run_script(ceiling, "mint_token.py")
