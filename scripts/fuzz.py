"""Property-based API fuzzing: Schemathesis, every check, against a real Keel server.

    .venv/bin/python scripts/fuzz.py [--as superuser|user] [--max-examples 25] [--database-url URL]

Starts Uvicorn on a free loopback port with a fresh database (PostgreSQL database
`keel_fuzz` next to TEST_DATABASE_URL when that is set, else a SQLite file), then runs
`schemathesis run` with all checks and every phase (examples, coverage, fuzzing, stateful),
authenticated as throwaway superusers (every route reachable) or normal users (`--as user`).
Exits with Schemathesis' status: non-zero on any failure.
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def fresh_postgres(url: str) -> str:
    """Drop and recreate `keel_fuzz` on the server that `url` points at."""
    server = make_url(url)
    target = server.set(database="keel_fuzz")
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text("DROP DATABASE IF EXISTS keel_fuzz WITH (FORCE)"))
            await conn.execute(text("CREATE DATABASE keel_fuzz"))
    finally:
        await engine.dispose()
    return target.render_as_string(hide_password=False)


def wait_ready(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"server exited with {server.returncode}")
        try:
            if httpx.get(f"{base_url}/health/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become ready within 30 s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=25)
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--workers", default="1")
    parser.add_argument("--as", dest="role", choices=["superuser", "user"], default="superuser")
    args, extra = parser.parse_known_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url and args.database_url.startswith("postgresql"):
            database_url = asyncio.run(fresh_postgres(args.database_url))
        else:
            database_url = f"sqlite+aiosqlite:///{tmp}/fuzz.db"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "ENVIRONMENT": "test",
            "DATABASE_URL": database_url,
            "SECRET_KEY": "fuzzing-secret-key-0123456789-abcdefghijklmnop",
            "RATE_LIMIT_REQUESTS": "100000000",
            "AUTH_RATE_LIMIT_REQUESTS": "100000000",
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
            "KEEL_FUZZ_URL": base_url,
            "KEEL_FUZZ_ROLE": args.role,
            "SCHEMATHESIS_HOOKS": "fuzz_hooks",  # scripts/fuzz_hooks.py
            "PYTHONPATH": f"{ROOT}:{ROOT / 'scripts'}",
        }
        env.pop("REDIS_URL", None)
        subprocess.run([BIN / "python", "-m", "app", "migrate"], env=env, cwd=ROOT, check=True)
        server = subprocess.Popen(
            [BIN / "python", "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=ROOT,
        )
        try:
            wait_ready(base_url, server)
            command = [
                str(BIN / "schemathesis"),
                "run",
                f"{base_url}/api/v1/openapi.json",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                str(args.max_examples),
                "--workers",
                args.workers,
                "--generation-database",
                "none",
                "--seed",
                "20261124",
                *extra,
            ]
            return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    raise SystemExit(main())
