"""Keel under test: a fresh PostgreSQL database, the seed, the production server, a login."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import redis

from benchlib.processes import ProcessGroups, Server, wait_http_ok

USERS = 100
ITEMS_PER_USER = 100  # 10,000 items, as many per user as the ceiling's seed
PASSWORD = "bench-password-correct-horse"  # every seeded user's; hashed with Keel's own hasher


def email(i: int) -> str:
    return f"user{i}@example.com"


@dataclass(frozen=True)
class KeelConfig:
    root: Path
    pg_server: str  # postgresql://user@host:port (no database)
    database: str
    redis_url: str
    log_dir: Path

    @property
    def asyncpg_dsn(self) -> str:
        return f"{self.pg_server}/{self.database}"

    @property
    def database_url(self) -> str:
        return self.asyncpg_dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def keel_env(config: KeelConfig, bind: str) -> dict[str, str]:
    """Production settings; limits so high they never refuse, though the limiter still runs."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env.update(
        ENVIRONMENT="production",
        SECRET_KEY=secrets.token_urlsafe(48),
        WORKERS="2",
        BIND=bind,
        DATABASE_URL=config.database_url,
        REDIS_URL=config.redis_url,
        RATE_LIMIT_REQUESTS="1000000000",
        AUTH_RATE_LIMIT_REQUESTS="1000000000",
        # INFO keeps the access log on: its cost is part of every request. It goes to a file.
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        # Production requires them; the benchmark sends no email.
        SMTP_HOST="127.0.0.1",
        EMAIL_FROM="Keel <no-reply@example.com>",
        FRONTEND_URL="https://app.example.com",
    )
    return env


async def _recreate_database(config: KeelConfig) -> None:
    admin = await asyncpg.connect(f"{config.pg_server}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{config.database}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{config.database}"')
    finally:
        await admin.close()


# Item g belongs to user g % USERS, one minute apart: the ceiling's seed, with Keel's users.
SEED_ITEMS_SQL = """
INSERT INTO items (id, title, description, owner_id, created_at, updated_at)
SELECT gen_random_uuid(), 'Item ' || g,
       'A moderately long description of item number ' || g || ', as a client would write one.',
       u.id,
       timestamptz '2025-01-02 00:00:00+00' + g * interval '1 minute',
       timestamptz '2025-01-02 00:00:00+00' + g * interval '1 minute'
FROM generate_series(0, $2 - 1) g
JOIN (SELECT id, row_number() OVER (ORDER BY created_at) - 1 AS n FROM users) u ON u.n = g % $1
"""


async def _seed(config: KeelConfig) -> int:
    sys.path.insert(0, str(config.root))
    from app.core.security import password_hash  # Keel's own Argon2id parameters

    hashes = await asyncio.gather(
        *(asyncio.to_thread(password_hash.hash, PASSWORD) for _ in range(USERS))
    )
    conn = await asyncpg.connect(config.asyncpg_dsn)
    try:
        await conn.executemany(
            "INSERT INTO users (id, email, full_name, hashed_password, is_active, is_superuser,"
            " created_at, updated_at) VALUES (gen_random_uuid(), $1, $2, $3, true, false,"
            " timestamptz '2025-01-01 00:00:00+00' + $4 * interval '1 second',"
            " timestamptz '2025-01-01 00:00:00+00' + $4 * interval '1 second')",
            [(email(i), f"Bench User {i}", hashes[i], i) for i in range(USERS)],
        )
        await conn.execute(SEED_ITEMS_SQL, USERS, USERS * ITEMS_PER_USER)
        await conn.execute("VACUUM ANALYZE users, items")
        return int(await conn.fetchval("SELECT count(*) FROM items"))
    finally:
        await conn.close()


def prepare_database(config: KeelConfig) -> int:
    """Drop + create the database, migrate it with Keel's CLI, seed it; returns the item count."""
    asyncio.run(_recreate_database(config))
    env = keel_env(config, "127.0.0.1:0")
    subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        env=env,
        cwd=config.root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return asyncio.run(_seed(config))


def flush_redis_db(url: str) -> str:
    """Empty the one Redis database the harness owns; returns the server's version."""
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
        info: dict[str, object] = client.info("server")  # type: ignore[assignment]
        return str(info["redis_version"])
    finally:
        client.close()


def start_keel(
    groups: ProcessGroups,
    config: KeelConfig,
    port: int,
    *,
    name: str = "keel",
    extra_gunicorn_args: str = "",
    extra_env: dict[str, str] | None = None,
) -> tuple[Server, float]:
    """`gunicorn -c gunicorn.conf.py app.main:app`; returns it and its cold start in seconds."""
    env = keel_env(config, f"127.0.0.1:{port}") | (extra_env or {})
    if extra_gunicorn_args:
        env["GUNICORN_CMD_ARGS"] = extra_gunicorn_args
    gunicorn = Path(sys.executable).parent / "gunicorn"
    started = time.perf_counter()
    server = groups.spawn(
        name,
        [gunicorn, "-c", "gunicorn.conf.py", "app.main:app"],
        env=env,
        cwd=config.root,
        log_path=config.log_dir / f"{name}.log",
        base_url=f"http://127.0.0.1:{port}",
    )
    wait_http_ok(server, "/health/ready")
    return server, time.perf_counter() - started


def login(base_url: str, i: int) -> str:
    """A bearer token for seeded user i, through the real `POST /api/v1/auth/token`."""
    response = httpx.post(
        f"{base_url}/api/v1/auth/token",
        data={"username": email(i), "password": PASSWORD},
        timeout=30,
    )
    if response.status_code != 200:
        raise SystemExit(f"login of {email(i)} failed: {response.status_code} {response.text}")
    return str(response.json()["access_token"])


def login_form(i: int) -> str:
    """The `POST /auth/token` body for seeded user i (application/x-www-form-urlencoded)."""
    return urllib.parse.urlencode({"username": email(i), "password": PASSWORD})
