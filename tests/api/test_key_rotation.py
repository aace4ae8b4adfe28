"""Key rotation and key separation (CONTRACT.md section 2, "Key rotation"), through the API.

SECRET_KEY signs, PREVIOUS_SECRET_KEYS only verify, tokens name their key (`kid`), and each use
(access tokens, refresh tokens, cursors) has its own key: nothing signed for one verifies as
another.
"""

from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from app.api.v1.resources import cursors
from app.config import Settings
from app.core.keys import key_id
from tests.api.conftest import PASSWORD, Account, assert_envelope, login, make_account
from tests.conftest import TEST_SECRET_KEY

ME = "/api/v1/users/me"
ITEMS = "/api/v1/items"
REFRESH = "/api/v1/auth/refresh"
KEY_1 = "rotation-key-1-Xq3vN9LpT2RwY8hC5mJb0sDfGa4EuKiO"
KEY_2 = "rotation-key-2-Zn1VbWc7Hy6Tr3Qp9Lm5Ks2Jd8Fg4Ah0E"


def kid(token: str) -> str:
    header = jwt.get_unverified_header(token)
    return str(header["kid"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def first_cursor(client: httpx.AsyncClient, account: Account) -> str:
    """A cursor of the account's items (it makes three so that more pages follow)."""
    for number in range(3):
        created = await client.post(ITEMS, json={"title": f"#{number}"}, headers=account.headers)
        assert created.status_code == 201, created.text
    page = await client.get(ITEMS, params={"limit": 1}, headers=account.headers)
    cursor: str = page.json()["next_cursor"]
    return cursor


async def test_rotation_walk(
    make_client: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    walk: list[str] = []

    # 1. Key 1 alone: a login (and a second one whose refresh token stays unused), a cursor.
    async with make_client(make_settings(SECRET_KEY=KEY_1)) as client:
        alice = await make_account(client, "alice@example.com")
        spare = (await login(client, alice.email, PASSWORD)).json()
        old_cursor = await first_cursor(client, alice)
    assert kid(alice.access_token) == kid(alice.refresh_token) == key_id(KEY_1)
    walk.append(f"key 1: login, tokens kid={kid(alice.access_token)}, cursor issued")

    # 2. Key 2 signs, key 1 still verifies: nobody is logged out, no cursor breaks.
    rotated = make_settings(SECRET_KEY=KEY_2, PREVIOUS_SECRET_KEYS=f'["{KEY_1}"]')
    async with make_client(rotated) as client:
        me = await client.get(ME, headers=alice.headers)
        assert me.status_code == 200, me.text
        page = await client.get(ITEMS, params={"cursor": old_cursor}, headers=alice.headers)
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) == 2
        refreshed = await client.post(REFRESH, json={"refresh_token": alice.refresh_token})
        assert refreshed.status_code == 200, refreshed.text
        pair = refreshed.json()
        assert kid(pair["access_token"]) == kid(pair["refresh_token"]) == key_id(KEY_2)
        assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
        fresh = await login(client, alice.email, PASSWORD)
        assert kid(fresh.json()["access_token"]) == key_id(KEY_2)
        new_page = await client.get(ITEMS, params={"limit": 1}, headers=alice.headers)
        new_cursor = new_page.json()["next_cursor"]
    walk.append(
        f"key 2 + previous key 1: old access {me.status_code}, old cursor {page.status_code},"
        f" old refresh {refreshed.status_code} -> pair kid={kid(pair['access_token'])},"
        f" new login kid={kid(fresh.json()['access_token'])}"
    )

    # 3. Key 1 removed: what it signed is over; what key 2 signed goes on.
    async with make_client(make_settings(SECRET_KEY=KEY_2)) as client:
        old_access = await client.get(ME, headers=alice.headers)
        assert_envelope(old_access, 401, "unauthorized")
        old_refresh = await client.post(REFRESH, json={"refresh_token": spare["refresh_token"]})
        assert_envelope(old_refresh, 401, "unauthorized")
        stale = await client.get(
            ITEMS, params={"cursor": old_cursor}, headers=bearer(pair["access_token"])
        )
        assert_envelope(stale, 422, "validation_error")
        new_access = await client.get(ME, headers=bearer(pair["access_token"]))
        assert new_access.status_code == 200
        later = await client.get(
            ITEMS, params={"cursor": new_cursor}, headers=bearer(pair["access_token"])
        )
        assert later.status_code == 200
        new_refresh = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
        assert new_refresh.status_code == 200
    walk.append(
        f"key 2 alone: old access {old_access.status_code}, old refresh {old_refresh.status_code},"
        f" old cursor {stale.status_code}; new access {new_access.status_code},"
        f" new cursor {later.status_code}, new refresh {new_refresh.status_code}"
    )
    print("\n".join(walk))


async def test_pods_before_and_after_the_switch_accept_each_others_tokens(
    make_client: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    """README's step 1 then step 2: during the rollout both kinds of pod serve together."""
    step_1 = make_settings(SECRET_KEY=KEY_1, PREVIOUS_SECRET_KEYS=KEY_2)
    step_2 = make_settings(SECRET_KEY=KEY_2, PREVIOUS_SECRET_KEYS=KEY_1)
    async with make_client(step_1) as old_pod, make_client(step_2) as new_pod:
        alice = await make_account(old_pod, "alice@example.com")
        bob = await make_account(new_pod, "bob@example.com")
        assert kid(alice.access_token) == key_id(KEY_1)
        assert kid(bob.access_token) == key_id(KEY_2)
        for pod in (old_pod, new_pod):
            for account in (alice, bob):
                assert (await pod.get(ME, headers=account.headers)).status_code == 200
        cursor = await first_cursor(new_pod, bob)
        page = await old_pod.get(ITEMS, params={"cursor": cursor}, headers=bob.headers)
        assert page.status_code == 200
        refreshed = await old_pod.post(REFRESH, json={"refresh_token": bob.refresh_token})
        assert kid(refreshed.json()["access_token"]) == key_id(KEY_1)  # the signing key there


def access_claims(account: Account) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(account.access_token, options={"verify_signature": False})
    return claims


def refresh_claims(account: Account) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(account.refresh_token, options={"verify_signature": False})
    return claims


def signed(claims: dict[str, Any], key: str | bytes) -> str:
    """Claims signed HS256 with `key`, naming the service's current key (as a forger would)."""
    return jwt.encode(claims, key, algorithm="HS256", headers={"kid": key_id(TEST_SECRET_KEY)})


@pytest.mark.parametrize("use", ["refresh", "cursor"])
async def test_no_other_key_signs_an_access_token(
    client: httpx.AsyncClient, alice: Account, settings: Settings, use: str
) -> None:
    keys = settings.keys.current
    other = keys.refresh if use == "refresh" else keys.cursor
    assert (
        await client.get(ME, headers=bearer(signed(access_claims(alice), other)))
    ).status_code == 401
    # The same claims signed with the secret itself are a working access token.
    right = signed(access_claims(alice), TEST_SECRET_KEY)
    assert (await client.get(ME, headers=bearer(right))).status_code == 200


@pytest.mark.parametrize("use", ["access", "cursor"])
async def test_no_other_key_signs_a_refresh_token(
    client: httpx.AsyncClient, alice: Account, settings: Settings, use: str
) -> None:
    keys = settings.keys.current
    other: str | bytes = keys.access if use == "access" else keys.cursor
    forged = await client.post(
        REFRESH, json={"refresh_token": signed(refresh_claims(alice), other)}
    )
    assert_envelope(forged, 401, "unauthorized")
    # The family survives a forgery (nothing validly signed was replayed): with the refresh key
    # the same claims are the account's working refresh token.
    right = signed(refresh_claims(alice), keys.refresh)
    assert (await client.post(REFRESH, json={"refresh_token": right})).status_code == 200


@pytest.mark.parametrize("use", ["access", "refresh"])
async def test_no_other_key_signs_a_cursor(
    client: httpx.AsyncClient, alice: Account, settings: Settings, use: str
) -> None:
    keys = settings.keys.current
    cursor = await first_cursor(client, alice)
    position = cursors.decode(cursor, keys=[keys.cursor], collection="/api/v1/items")
    other = keys.access.encode() if use == "access" else keys.refresh
    forged = cursors.encode(position, key=other, collection="/api/v1/items")
    response = await client.get(ITEMS, params={"cursor": forged}, headers=alice.headers)
    assert_envelope(response, 422, "validation_error")
    again = cursors.encode(position, key=keys.cursor, collection="/api/v1/items")
    assert again == cursor


async def test_a_token_naming_an_unknown_key_is_refused(
    client: httpx.AsyncClient, alice: Account
) -> None:
    claims = access_claims(alice)
    unnamed = jwt.encode(claims, TEST_SECRET_KEY, algorithm="HS256")
    assert (await client.get(ME, headers=bearer(unnamed))).status_code == 401
    misnamed = jwt.encode(claims, TEST_SECRET_KEY, algorithm="HS256", headers={"kid": "0" * 16})
    assert (await client.get(ME, headers=bearer(misnamed))).status_code == 401
