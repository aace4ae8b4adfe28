"""Service rules that are not visible through one HTTP call."""

import asyncio
import subprocess
import sys
import threading
from collections.abc import AsyncIterator

import pytest
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.core import database, security
from app.models import User
from app.services import auth_service, user_service


@pytest.fixture
async def sessionmaker(
    settings: Settings, _clean_tables: None
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = database.create_engine(settings)
    yield database.create_sessionmaker(engine)
    await engine.dispose()


async def count_users(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(User)) or 0)


async def test_first_superuser_is_created_once_when_workers_race(
    sessionmaker: async_sessionmaker[AsyncSession], cleanup_engine: AsyncEngine
) -> None:
    outcomes = await asyncio.gather(
        *(
            user_service.ensure_superuser(
                sessionmaker, email="root@example.com", password="root password"
            )
            for _ in range(4)
        )
    )
    assert outcomes.count("created") == 1
    assert set(outcomes) <= {"created", "exists"}
    assert await count_users(cleanup_engine) == 1
    again = await user_service.ensure_superuser(
        sessionmaker, email="root@example.com", password="root password"
    )
    assert again == "exists"


async def test_existing_regular_user_is_not_promoted(
    sessionmaker: async_sessionmaker[AsyncSession], cleanup_engine: AsyncEngine
) -> None:
    async with sessionmaker() as session:
        await user_service.create(session, email="squat@example.com", password="squatter pw")
        await session.commit()
    outcome = await user_service.ensure_superuser(
        sessionmaker, email="squat@example.com", password="other password"
    )
    assert outcome == "taken"
    async with cleanup_engine.connect() as conn:
        assert await conn.scalar(select(User.is_superuser)) is False


async def test_outdated_hash_is_upgraded_at_login(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    weak = PasswordHash((Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1),))
    async with sessionmaker() as session:
        session.add(User(email="old@example.com", hashed_password=weak.hash("old password")))
        await session.commit()
    async with sessionmaker() as session:
        await auth_service.login(
            session, settings, email="old@example.com", password="old password"
        )
        await session.commit()
    async with sessionmaker() as session:
        stored = await session.scalar(select(User.hashed_password))
    assert stored is not None
    assert "m=19456,t=2,p=1" in stored
    assert security.password_hash.verify("old password", stored)


async def test_hashing_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[threading.Thread] = []
    original = security.password_hash.hash

    def spy(password: str) -> str:
        threads.append(threading.current_thread())
        return original(password)

    monkeypatch.setattr(security.password_hash, "hash", spy)
    await security.hash_password("some password")
    assert threads
    assert threads[0] is not threading.main_thread()


@pytest.mark.usefixtures("_clean_tables")
def test_cli_create_superuser(database_url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "DATABASE_URL": database_url, "ENVIRONMENT": "test"}
    command = [
        sys.executable,
        "-m",
        "app",
        "create-superuser",
        "--email",
        "Cli@Example.com",
        "--password",
        "cli password 1",
    ]
    first = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "superuser cli@example.com created" in first.stdout
    second = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert second.returncode == 0
    assert "superuser cli@example.com exists" in second.stdout
    bad = subprocess.run(
        [*command[:-1], "short"], env=env, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert "Refused" in bad.stderr
