"""DATABASE_POOLER, DATABASE_DIRECT_URL and DATABASE_STATEMENT_CACHE_SIZE (README: Behind
PgBouncer): what each engine gets, and migrations going past the pooler."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import ConfigError, load_settings
from app.core import database

POOLER_URL = "postgresql+asyncpg://keel@pgbouncer:6432/keel"
DIRECT_URL = "postgresql+asyncpg://keel@postgres:5432/keel"


def test_a_pooler_needs_postgresql() -> None:
    with pytest.raises(ConfigError, match="DATABASE_POOLER"):
        load_settings(_env_file=None, DATABASE_POOLER="transaction")


def test_direct_url_defaults_to_database_url() -> None:
    settings = load_settings(_env_file=None, DATABASE_URL=DIRECT_URL)
    assert settings.database_direct_url == DIRECT_URL


def test_through_a_transaction_pooler_nothing_outlives_a_transaction() -> None:
    settings = load_settings(_env_file=None, DATABASE_URL=POOLER_URL, DATABASE_POOLER="transaction")
    pooled = database.connect_args(settings, pooled=True)
    assert set(pooled["server_settings"]) == {"application_name"}  # PgBouncer refuses the rest
    assert pooled["statement_cache_size"] == pooled["prepared_statement_cache_size"] == 0
    assert pooled["command_timeout"] == settings.DATABASE_STATEMENT_TIMEOUT_MS / 1000
    direct = database.connect_args(settings, pooled=False)
    assert direct["server_settings"]["statement_timeout"] == "5000"
    assert direct["statement_cache_size"] == direct["prepared_statement_cache_size"] == 100


def test_statement_caches_are_explicit_configuration() -> None:
    """PgBouncer >= 1.21 with max_prepared_statements may keep them: the operator says so."""
    settings = load_settings(
        _env_file=None,
        DATABASE_URL=POOLER_URL,
        DATABASE_POOLER="transaction",
        DATABASE_STATEMENT_CACHE_SIZE=50,
    )
    pooled = database.connect_args(settings, pooled=True)
    assert pooled["statement_cache_size"] == pooled["prepared_statement_cache_size"] == 50


def test_migrate_uses_the_direct_url(tmp_path: Path, repo_root: Path) -> None:
    """`python -m app migrate` with DATABASE_URL at a pooler that is not even there."""
    direct = tmp_path / "direct.db"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "ENVIRONMENT": "test",
        "DATABASE_URL": "postgresql+asyncpg://keel@127.0.0.1:9/keel",
        "DATABASE_POOLER": "transaction",
        "DATABASE_DIRECT_URL": f"sqlite+aiosqlite:///{direct}",
    }
    subprocess.run(
        [sys.executable, "-m", "app", "migrate"], env=env, cwd=repo_root, check=True, timeout=60
    )
    with sqlite3.connect(direct) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchone()
