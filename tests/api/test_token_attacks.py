"""Forged, tampered, expired and misused tokens: every one is a 401 envelope, never a 500."""

import base64
import json
import uuid
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest

from app.config import Settings
from app.core.keys import key_id
from tests.api.conftest import Account, assert_envelope, login
from tests.conftest import TEST_SECRET_KEY

ME = "/api/v1/users/me"
FOREIGN_KEY = "another-secret-key-that-is-also-long-enough-9876543210"


def claims_for(account: Account, settings: Settings, **changes: Any) -> dict[str, Any]:
    """The claims of the account's real access token, with changes (None removes a claim)."""
    claims = jwt.decode(
        account.access_token,
        settings.secret_key,
        algorithms=["HS256"],
        audience=settings.JWT_AUDIENCE,
    )
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def sign(claims: dict[str, Any], key: str = TEST_SECRET_KEY, algorithm: str = "HS256") -> str:
    """Claims signed as the service signs them, naming its key (`kid`): only what a test
    changes (a claim, the algorithm, the key) can be why the token is refused."""
    with warnings.catch_warnings():  # HS512 with the real (shorter than 64-byte) key
        warnings.simplefilter("ignore", jwt.warnings.InsecureKeyLengthWarning)
        return jwt.encode(
            claims, key, algorithm=algorithm, headers={"kid": key_id(TEST_SECRET_KEY)}
        )


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def refused(client: httpx.AsyncClient, token: str) -> None:
    response = await client.get(ME, headers={"Authorization": f"Bearer {token}"})
    assert_envelope(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def now_plus(minutes: int) -> int:
    return int((datetime.now(UTC) + timedelta(minutes=minutes)).timestamp())


UNSIGNED_HEADER = {"alg": "none", "typ": "JWT", "kid": key_id(TEST_SECRET_KEY)}
TAMPERINGS: dict[str, Callable[[Account, Settings], str]] = {
    "alg_none": lambda a, s: f"{b64(UNSIGNED_HEADER)}.{b64(claims_for(a, s))}.",
    "hs512": lambda a, s: sign(claims_for(a, s), algorithm="HS512"),
    "foreign_key": lambda a, s: sign(claims_for(a, s), key=FOREIGN_KEY),
    "expired": lambda a, s: sign(claims_for(a, s, exp=now_plus(-5), iat=now_plus(-20))),
    "not_yet_valid": lambda a, s: sign(claims_for(a, s, nbf=now_plus(10))),
    "missing_sub": lambda a, s: sign(claims_for(a, s, sub=None)),
    "integer_sub": lambda a, s: sign(claims_for(a, s, sub=12345)),
    "garbage_sub": lambda a, s: sign(claims_for(a, s, sub="not-a-uuid")),
    "unknown_user": lambda a, s: sign(claims_for(a, s, sub=str(uuid.uuid4()))),
    "unknown_session": lambda a, s: sign(claims_for(a, s, sid=str(uuid.uuid4()))),
    "missing_sid": lambda a, s: sign(claims_for(a, s, sid=None)),
    "missing_exp": lambda a, s: sign(claims_for(a, s, exp=None)),
    "wrong_audience": lambda a, s: sign(claims_for(a, s, aud="someone-else")),
    "wrong_issuer": lambda a, s: sign(claims_for(a, s, iss="someone-else")),
    "refresh_type": lambda a, s: sign(claims_for(a, s, typ="refresh")),
    "no_type": lambda a, s: sign(claims_for(a, s, typ=None)),
    "not_a_jwt": lambda a, s: "definitely.not.a-token",
    "empty_segments": lambda a, s: "..",
}


@pytest.mark.parametrize("name", list(TAMPERINGS))
async def test_forged_tokens_are_refused(
    client: httpx.AsyncClient, alice: Account, settings: Settings, name: str
) -> None:
    await refused(client, TAMPERINGS[name](alice, settings))


async def test_payload_edited_under_the_old_signature(
    client: httpx.AsyncClient, alice: Account, bob: Account, settings: Settings
) -> None:
    header, _, signature = alice.access_token.split(".")
    edited = b64(claims_for(alice, settings, sub=bob.id))
    await refused(client, f"{header}.{edited}.{signature}")


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer \u00e9t\u00e9"],
)
async def test_malformed_authorization_headers(client: httpx.AsyncClient, header: str) -> None:
    response = await client.get(ME, headers={"Authorization": header.encode("utf-8")})
    assert_envelope(response, 401, "unauthorized")


async def test_token_dies_after_password_change(client: httpx.AsyncClient, alice: Account) -> None:
    changed = await client.post(
        "/api/v1/users/me/password",
        json={"current_password": alice.password, "new_password": "a brand new password"},
        headers=alice.headers,
    )
    assert changed.status_code == 204
    await refused(client, alice.access_token)
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert_envelope(refresh, 401, "unauthorized")


async def test_token_dies_with_its_user(client: httpx.AsyncClient, alice: Account) -> None:
    assert (await client.delete(ME, headers=alice.headers)).status_code == 204
    await refused(client, alice.access_token)


async def test_token_dies_when_user_is_deactivated(
    client: httpx.AsyncClient, alice: Account, admin: Account
) -> None:
    deactivated = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_active": False}, headers=admin.headers
    )
    assert deactivated.status_code == 200
    assert deactivated.json()["is_active"] is False
    await refused(client, alice.access_token)
    # Reactivation does not revive the old sessions, though the account logs in again.
    reactivated = await client.patch(
        f"/api/v1/users/{alice.id}", json={"is_active": True}, headers=admin.headers
    )
    assert reactivated.status_code == 200
    assert reactivated.json()["is_active"] is True
    await refused(client, alice.access_token)
    assert (await login(client, alice.email, alice.password)).status_code == 200
