"""Registration, login, refresh rotation and revocation, against a hostile client."""

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.models import AuthSession, User
from tests.api.conftest import (
    PASSWORD,
    Account,
    assert_envelope,
    login,
    make_account,
    without_request_id,
)

REGISTER = "/api/v1/auth/register"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/users/me"


async def test_register_returns_public_user(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REGISTER, json={"email": "New@Example.com", "password": PASSWORD, "full_name": "Né w"}
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {
        "id",
        "email",
        "full_name",
        "is_active",
        "is_superuser",
        "email_verified",
        "created_at",
    }
    assert body["email"] == "new@example.com"
    assert body["full_name"] == "Né w"
    assert (body["is_active"], body["is_superuser"], body["email_verified"]) == (True, False, False)
    uuid.UUID(body["id"])
    assert "hash" not in response.text


async def test_register_email_is_unique_case_insensitively(client: httpx.AsyncClient) -> None:
    await make_account(client, "carol@example.com")
    again = await client.post(REGISTER, json={"email": "CAROL@example.COM", "password": PASSWORD})
    assert_envelope(again, 409, "conflict")


@pytest.mark.parametrize(
    "extra",
    [
        {"is_superuser": True},
        {"is_active": False},
        {"id": str(uuid.uuid4())},
        {"hashed_password": "x"},
    ],
)
async def test_register_refuses_mass_assignment(
    client: httpx.AsyncClient, cleanup_engine: AsyncEngine, extra: dict[str, object]
) -> None:
    response = await client.post(
        REGISTER, json={"email": "mallory@example.com", "password": PASSWORD, **extra}
    )
    body = assert_envelope(response, 422, "validation_error")
    assert body["details"][0]["field"] == f"body.{next(iter(extra))}"
    async with cleanup_engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(User)) == 1  # only the admin


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@example.com", "password": "short"},
        {"email": "a@example.com", "password": "x" * 129},
        {"email": "a@example.com", "password": "nul\u0000inside-it"},
        {"email": "a@example.com", "password": PASSWORD, "full_name": "bad\u0000name"},
        {"email": "a@example.com"},
    ],
)
async def test_register_validates(client: httpx.AsyncClient, payload: dict[str, str]) -> None:
    assert_envelope(await client.post(REGISTER, json=payload), 422, "validation_error")


async def test_register_refuses_lone_surrogate(client: httpx.AsyncClient) -> None:
    raw = b'{"email": "a@example.com", "password": "abcdefgh\\ud800"}'
    response = await client.post(
        REGISTER, content=raw, headers={"content-type": "application/json"}
    )
    assert_envelope(response, 422, "validation_error")


async def test_unicode_password_round_trips(client: httpx.AsyncClient) -> None:
    account = await make_account(client, "uni@example.com", "pässwörd 🔑 בדיקה")
    assert account.access_token


async def test_login_returns_token_pair(client: httpx.AsyncClient, alice: Account) -> None:
    response = await login(client, alice.email, alice.password)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 15 * 60


async def test_login_email_is_case_insensitive(client: httpx.AsyncClient, alice: Account) -> None:
    assert (await login(client, "ALICE@example.com", alice.password)).status_code == 200


async def test_unknown_email_and_wrong_password_look_the_same(
    client: httpx.AsyncClient, alice: Account
) -> None:
    wrong_password = await login(client, alice.email, "not the password")
    unknown_email = await login(client, "nobody@example.com", "not the password")
    assert_envelope(wrong_password, 401, "unauthorized")
    assert wrong_password.status_code == unknown_email.status_code
    assert without_request_id(wrong_password) == without_request_id(unknown_email)
    assert wrong_password.headers["www-authenticate"] == "Bearer"
    assert unknown_email.headers["www-authenticate"] == "Bearer"


async def test_login_form_is_validated(client: httpx.AsyncClient) -> None:
    missing = await client.post("/api/v1/auth/token", data={"username": "a@example.com"})
    assert_envelope(missing, 422, "validation_error")
    nul = await client.post(
        "/api/v1/auth/token", data={"username": "a\u0000@example.com", "password": "x"}
    )
    assert_envelope(nul, 422, "validation_error")
    as_json = await client.post(
        "/api/v1/auth/token", json={"username": "a@example.com", "password": "x"}
    )
    assert_envelope(as_json, 415, "unsupported_media_type")


async def test_inactive_user_cannot_log_in(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    deactivated = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_active": False}, headers=admin.headers
    )
    assert deactivated.status_code == 200
    assert_envelope(await login(client, alice.email, alice.password), 401, "unauthorized")
    assert_envelope(await client.get(ME, headers=alice.headers), 401, "unauthorized")


async def test_refresh_rotates_and_replay_revokes_the_family(
    make_client: Callable[[Settings], Any], make_settings: Callable[..., Settings]
) -> None:
    # Without the grace window every replay is one (tests/api/test_refresh_grace.py: with it).
    async with make_client(make_settings(REFRESH_REUSE_GRACE_SECONDS=0)) as client:
        await _rotate_then_replay(client, await make_account(client, "alice@example.com"))


async def _rotate_then_replay(client: httpx.AsyncClient, alice: Account) -> None:
    first = await client.post(REFRESH, json={"refresh_token": alice.refresh_token})
    assert first.status_code == 200
    pair = first.json()
    assert pair["refresh_token"] != alice.refresh_token
    new_headers = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.get(ME, headers=new_headers)).status_code == 200

    replay = await client.post(REFRESH, json={"refresh_token": alice.refresh_token})
    assert_envelope(replay, 401, "unauthorized")
    # The replay ended the whole family: the newest tokens are dead too.
    assert_envelope(await client.get(ME, headers=new_headers), 401, "unauthorized")
    rotated = await client.post(REFRESH, json={"refresh_token": pair["refresh_token"]})
    assert_envelope(rotated, 401, "unauthorized")
    assert_envelope(await client.get(ME, headers=alice.headers), 401, "unauthorized")


async def test_access_token_is_not_a_refresh_token(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.post(REFRESH, json={"refresh_token": alice.access_token})
    assert_envelope(response, 401, "unauthorized")
    # A refused token of the wrong type does not end the session.
    assert (await client.get(ME, headers=alice.headers)).status_code == 200


async def test_refresh_token_is_not_an_access_token(
    client: httpx.AsyncClient, alice: Account
) -> None:
    headers = {"Authorization": f"Bearer {alice.refresh_token}"}
    assert_envelope(await client.get(ME, headers=headers), 401, "unauthorized")


@pytest.mark.parametrize("body", [{}, {"refresh_token": ""}, {"refresh_token": "garbage"}])
async def test_refresh_refuses_garbage(client: httpx.AsyncClient, body: dict[str, str]) -> None:
    response = await client.post(REFRESH, json=body)
    assert response.status_code in (401, 422)
    assert set(response.json()) == {"error", "message", "details", "request_id"}


async def test_logout_ends_access_and_refresh_tokens(
    client: httpx.AsyncClient, alice: Account, cleanup_engine: AsyncEngine
) -> None:
    other_login = await login(client, alice.email, alice.password)
    response = await client.post(LOGOUT, headers=alice.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_envelope(await client.get(ME, headers=alice.headers), 401, "unauthorized")
    refresh = await client.post(REFRESH, json={"refresh_token": alice.refresh_token})
    assert_envelope(refresh, 401, "unauthorized")
    # Only that session ended: another login of the same user still works.
    other = {"Authorization": f"Bearer {other_login.json()['access_token']}"}
    assert (await client.get(ME, headers=other)).status_code == 200
    async with cleanup_engine.connect() as conn:
        revoked = select(func.count()).where(AuthSession.revoked_at.is_not(None))
        assert await conn.scalar(revoked) == 1


async def test_logout_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post(LOGOUT)
    assert_envelope(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
