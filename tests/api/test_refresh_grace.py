"""The refresh grace window: a refresh token presented again within REFRESH_REUSE_GRACE_SECONDS
of its first use (a retried request, a second tab) gets a working pair of the same family."""

from datetime import timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import AuthSession
from app.models.base import utc_now
from tests.api.conftest import PASSWORD, Account, assert_envelope

REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/users/me"


def bearer(pair: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": token})


async def test_a_second_use_within_the_window_gets_a_working_pair(
    client: httpx.AsyncClient, alice: Account
) -> None:
    first = await refresh(client, alice.refresh_token)
    second = await refresh(client, alice.refresh_token)
    assert (first.status_code, second.status_code) == (200, 200)
    for pair in (first.json(), second.json()):
        assert (await client.get(ME, headers=bearer(pair))).status_code == 200
    # Both tabs go on refreshing: the first pair's refresh token, then the second's (in the window).
    onward = await refresh(client, first.json()["refresh_token"])
    assert onward.status_code == 200
    assert (await refresh(client, second.json()["refresh_token"])).status_code == 200
    assert (await client.get(ME, headers=bearer(onward.json()))).status_code == 200


async def test_after_the_window_a_replay_ends_the_family(
    client: httpx.AsyncClient, alice: Account, cleanup_engine: AsyncEngine
) -> None:
    first = await refresh(client, alice.refresh_token)
    async with cleanup_engine.begin() as conn:
        await conn.execute(update(AuthSession).values(rotated_at=utc_now() - timedelta(seconds=11)))
    assert_envelope(await refresh(client, alice.refresh_token), 401, "unauthorized")
    assert_envelope(await client.get(ME, headers=bearer(first.json())), 401, "unauthorized")
    assert_envelope(await refresh(client, first.json()["refresh_token"]), 401, "unauthorized")


async def test_an_older_token_is_a_replay_even_within_the_window(
    client: httpx.AsyncClient, alice: Account
) -> None:
    first = await refresh(client, alice.refresh_token)
    second = await refresh(client, first.json()["refresh_token"])
    assert second.status_code == 200
    assert_envelope(await refresh(client, alice.refresh_token), 401, "unauthorized")
    assert_envelope(await client.get(ME, headers=bearer(second.json())), 401, "unauthorized")


async def test_no_grace_after_logout(client: httpx.AsyncClient, alice: Account) -> None:
    first = await refresh(client, alice.refresh_token)
    logout = await client.post("/api/v1/auth/logout", headers=bearer(first.json()))
    assert logout.status_code == 204
    assert_envelope(await refresh(client, alice.refresh_token), 401, "unauthorized")


async def test_no_grace_after_a_password_change(client: httpx.AsyncClient, alice: Account) -> None:
    first = await refresh(client, alice.refresh_token)
    changed = await client.post(
        f"{ME}/password",
        headers=bearer(first.json()),
        json={"current_password": PASSWORD, "new_password": "a brand new password 42"},
    )
    assert changed.status_code == 204
    assert_envelope(await refresh(client, alice.refresh_token), 401, "unauthorized")
