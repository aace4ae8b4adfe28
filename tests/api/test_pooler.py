"""Many clients at once, on every backend and through PgBouncer in transaction mode (CONTRACT.md
section 11): nothing fails that would not fail on a direct connection, the statement timeout
still applies, and a misconfigured connection says why."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from tests.api.conftest import Account, assert_envelope, make_account
from tests.conftest import POOLED_URLS
from tests.core.test_logging import json_lines

CLIENTS = 12  # more than the app's pool (10 + 5 overflow would be 15) keeps PgBouncer's 4 busy
ITEMS = "/api/v1/items"
STORM = 64


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Every request of a storm below reaches the pool: admission control would refuse some
    (tests/core/test_admission.py), and these tests are about what the pooler does with them."""
    return make_settings(MAX_CONCURRENT_REQUESTS=STORM)


async def _one_user(client: httpx.AsyncClient, n: int) -> list[int]:
    """A user's whole life, checking each answer: sign-up, refreshes, items, logout."""
    account = await make_account(client, f"user{n}@example.com")
    statuses = []
    for _ in range(2):  # each refresh token works once: always present the newest
        pair = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        statuses.append(pair.status_code)
        account.access_token, account.refresh_token = (
            pair.json()["access_token"],
            pair.json()["refresh_token"],
        )
    ids = []
    for i in range(3):
        created = await client.post(ITEMS, json={"title": f"{n}-{i}"}, headers=account.headers)
        statuses.append(created.status_code)
        ids.append(created.json()["id"])
    patched = await client.patch(f"{ITEMS}/{ids[0]}", json={"title": "x"}, headers=account.headers)
    deleted = await client.delete(f"{ITEMS}/{ids[1]}", headers=account.headers)
    page = await client.get(ITEMS, headers=account.headers)
    assert [item["id"] for item in page.json()["items"]] == [ids[2], ids[0]]  # newest first
    statuses += [patched.status_code, deleted.status_code, page.status_code]
    logout = await client.post("/api/v1/auth/logout", headers=account.headers)
    after = await client.get("/api/v1/users/me", headers=account.headers)
    return [*statuses, logout.status_code, after.status_code]


async def test_concurrent_clients_lose_nothing(client: httpx.AsyncClient) -> None:
    lives = await asyncio.gather(*(_one_user(client, n) for n in range(CLIENTS)))
    assert lives == [[200, 200, 201, 201, 201, 200, 204, 200, 204, 401]] * CLIENTS


async def _list_storm(client: httpx.AsyncClient, account: Account, requests: int) -> list[int]:
    pages = await asyncio.gather(
        *(client.get(ITEMS, headers=account.headers) for _ in range(requests))
    )
    return [page.status_code for page in pages]


async def test_concurrent_reads_all_answer(client: httpx.AsyncClient, alice: Account) -> None:
    for i in range(3):
        await client.post(ITEMS, json={"title": f"t{i}"}, headers=alice.headers)
    assert await _list_storm(client, alice, STORM) == [200] * STORM


async def test_statement_timeout_applies(
    make_settings: Callable[..., Settings],
    make_client: Any,
    database_url: str,
    cleanup_engine: AsyncEngine,
) -> None:
    """A statement stuck behind a lock is cancelled on the server when the timeout passes
    (through PgBouncer: by the driver's cancel request), and the client gets the 503."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks and statement_timeout are PostgreSQL notions")
    settings = make_settings(PROJECT_NAME="keel-slow", DATABASE_STATEMENT_TIMEOUT_MS=400)
    async with make_client(settings) as client:
        account = await make_account(client, "slow@example.com")
        async with cleanup_engine.connect() as locker:
            await locker.execute(text("LOCK TABLE items IN ACCESS EXCLUSIVE MODE"))
            started = time.monotonic()
            stuck = await client.get(ITEMS, headers=account.headers)
            elapsed = time.monotonic() - started
            waiting = await locker.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND application_name = 'keel-slow'"
                )
            )
            await locker.rollback()
        assert_envelope(stuck, 503, "service_unavailable")
        assert 0.4 <= elapsed < 1.2, elapsed  # the timeout, not the request deadline (30 s)
        assert waiting == 0  # cancelled on the server, not only abandoned by the client
        assert (await client.get(ITEMS, headers=account.headers)).status_code == 200


def _through_pgbouncer(database_url: str) -> None:
    if database_url not in POOLED_URLS:
        pytest.skip("a PgBouncer misconfiguration: only the PgBouncer leg has one")


async def test_refused_connection_is_named_once(
    make_settings: Callable[..., Settings],
    make_client: Any,
    database_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """DATABASE_POOLER=none sends statement_timeout at start-up, which PgBouncer refuses: the
    line names the setting that fixes it."""
    _through_pgbouncer(database_url)
    capfd.readouterr()
    async with make_client(make_settings(DATABASE_POOLER="none")) as client:
        ready = await client.get("/health/ready")
        for _ in range(3):
            refused = await client.post(
                "/api/v1/auth/register", json={"email": "a@example.com", "password": "pass-1234"}
            )
            assert_envelope(refused, 503, "service_unavailable")
    assert ready.status_code == 503
    assert ready.json()["details"] == {"reason": "database_refused", "sqlstate": "08P01"}
    logged = [
        line
        for line in json_lines(capfd.readouterr().err)
        if line.get("event") == "database_connection_refused"
    ]
    assert len(logged) == 1, logged  # four refusals, one line: the pooler's own words
    assert logged[0]["reason"] == "unsupported startup parameter: statement_timeout"
    assert logged[0]["sqlstate"] == "08P01"
    assert "Set DATABASE_POOLER=transaction" in logged[0]["hint"]  # what to do (CONTRACT 11)


async def test_statement_caches_through_old_pgbouncer_fail_as_bugs(
    make_settings: Callable[..., Settings],
    make_client: Any,
    database_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The caches kept (a setting meant for PgBouncer >= 1.21) through 1.18: the same reads as
    above fail, each as a 500 (a configuration bug, not an outage), with one line saying why.
    This is what the concurrent tests above would catch."""
    _through_pgbouncer(database_url)
    async with make_client(make_settings()) as client:  # set up through a well-configured app
        account = await make_account(client, "cached@example.com")
        await client.post(ITEMS, json={"title": "t"}, headers=account.headers)
    capfd.readouterr()
    cached = make_settings(DATABASE_STATEMENT_CACHE_SIZE=100, MAX_CONCURRENT_REQUESTS=STORM)
    async with make_client(cached) as client:
        statuses: list[int] = []
        for _ in range(5):  # a storm or a few; failures come at once in practice
            statuses += await _list_storm(client, account, STORM)
            if 500 in statuses:
                break
    assert 500 in statuses
    assert set(statuses) <= {200, 500}, statuses  # never dressed as a 503 outage
    logged = [
        line
        for line in json_lines(capfd.readouterr().err)
        if line.get("event") == "database_prepared_statement_lost"
    ]
    assert len(logged) == 1
    assert "DATABASE_POOLER" in logged[0]["hint"]
