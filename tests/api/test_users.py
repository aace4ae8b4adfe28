"""The caller's own account, and superuser-only management of every account."""

import uuid

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import Item, User
from tests.api.conftest import PASSWORD, Account, assert_envelope, login, make_account

ME = "/api/v1/users/me"
USERS = "/api/v1/users"


async def test_read_me(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get(ME, headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["email"] == "alice@example.com"
    assert body["full_name"] == "Alice"
    assert "hashed_password" not in body


async def test_update_me(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.patch(
        ME,
        json={
            "full_name": "Alice Liddell",
            "email": "Alice2@Example.com",
            "current_password": PASSWORD,
        },
        headers=alice.headers,
    )
    assert response.status_code == 200
    assert response.json()["full_name"] == "Alice Liddell"
    assert response.json()["email"] == "alice2@example.com"
    assert (await login(client, "alice2@example.com", PASSWORD)).status_code == 200


async def test_update_me_to_a_taken_email_conflicts(
    client: httpx.AsyncClient, alice: Account, bob: Account
) -> None:
    body = {"email": "BOB@example.com", "current_password": PASSWORD}
    response = await client.patch(ME, json=body, headers=alice.headers)
    assert_envelope(response, 409, "conflict")


@pytest.mark.parametrize(
    "body",
    [{"is_superuser": True}, {"is_active": False}, {"hashed_password": "x"}, {"email": None}],
)
async def test_update_me_refuses_privileged_fields(
    client: httpx.AsyncClient, alice: Account, cleanup_engine: AsyncEngine, body: dict[str, object]
) -> None:
    assert_envelope(
        await client.patch(ME, json=body, headers=alice.headers), 422, "validation_error"
    )
    async with cleanup_engine.connect() as conn:
        row = (await conn.execute(select(User).where(User.email == alice.email))).one()
    assert (row.is_superuser, row.is_active) == (False, True)


async def test_delete_me_removes_items_and_sessions(
    client: httpx.AsyncClient, alice: Account, cleanup_engine: AsyncEngine
) -> None:
    created = await client.post("/api/v1/items", json={"title": "mine"}, headers=alice.headers)
    assert created.status_code == 201
    assert (await client.delete(ME, headers=alice.headers)).status_code == 204
    async with cleanup_engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(Item)) == 0
        assert await conn.scalar(select(func.count()).where(User.email == alice.email)) == 0
    assert_envelope(await login(client, alice.email, PASSWORD), 401, "unauthorized")


async def test_change_password(client: httpx.AsyncClient, alice: Account) -> None:
    wrong = await client.post(
        f"{ME}/password",
        json={"current_password": "wrong password", "new_password": "another password"},
        headers=alice.headers,
    )
    assert_envelope(wrong, 403, "forbidden")
    assert (await client.get(ME, headers=alice.headers)).status_code == 200
    ok = await client.post(
        f"{ME}/password",
        json={"current_password": PASSWORD, "new_password": "another password"},
        headers=alice.headers,
    )
    assert ok.status_code == 204
    assert_envelope(await login(client, alice.email, PASSWORD), 401, "unauthorized")
    assert (await login(client, alice.email, "another password")).status_code == 200


async def test_change_password_validates_the_new_one(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.post(
        f"{ME}/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=alice.headers,
    )
    assert_envelope(response, 422, "validation_error")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", USERS),
        ("POST", USERS),
        ("GET", f"{USERS}/{uuid.uuid4()}"),
        ("PATCH", f"{USERS}/{uuid.uuid4()}"),
        ("DELETE", f"{USERS}/{uuid.uuid4()}"),
    ],
)
async def test_admin_routes_refuse_regular_users(
    client: httpx.AsyncClient, alice: Account, method: str, path: str
) -> None:
    body = {"email": "x@example.com", "password": PASSWORD} if method != "GET" else None
    response = await client.request(method, path, json=body, headers=alice.headers)
    assert_envelope(response, 403, "forbidden")
    anonymous = await client.request(method, path, json=body)
    assert_envelope(anonymous, 401, "unauthorized")


async def test_admin_manages_users(client: httpx.AsyncClient, admin: Account) -> None:
    created = await client.post(
        USERS,
        json={"email": "dave@example.com", "password": PASSWORD, "is_superuser": True},
        headers=admin.headers,
    )
    assert created.status_code == 201
    dave = created.json()
    assert dave["is_superuser"] is True

    read = await client.get(f"{USERS}/{dave['id']}", headers=admin.headers)
    assert read.json() == dave

    patched = await client.patch(
        f"{USERS}/{dave['id']}",
        json={"is_superuser": False, "full_name": "Dave", "password": "new password 1"},
        headers=admin.headers,
    )
    assert patched.status_code == 200
    assert (patched.json()["is_superuser"], patched.json()["full_name"]) == (False, "Dave")
    assert (await login(client, "dave@example.com", "new password 1")).status_code == 200

    deleted = await client.delete(f"{USERS}/{dave['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    missing = await client.get(f"{USERS}/{dave['id']}", headers=admin.headers)
    assert_envelope(missing, 404, "not_found")


async def test_admin_create_conflicts_on_taken_email(
    client: httpx.AsyncClient, admin: Account, alice: Account
) -> None:
    response = await client.post(
        USERS, json={"email": "ALICE@example.com", "password": PASSWORD}, headers=admin.headers
    )
    assert_envelope(response, 409, "conflict")


async def test_admin_lists_users_newest_first(client: httpx.AsyncClient, admin: Account) -> None:
    for n in range(3):
        await make_account(client, f"user{n}@example.com")
    page = await client.get(USERS, params={"limit": 2}, headers=admin.headers)
    assert page.status_code == 200
    body = page.json()
    assert (body["total"], body["limit"], body["offset"]) == (4, 2, 0)
    assert [u["email"] for u in body["items"]] == ["user2@example.com", "user1@example.com"]
    last = await client.get(USERS, params={"limit": 2, "offset": 2}, headers=admin.headers)
    assert [u["email"] for u in last.json()["items"]] == ["user0@example.com", "admin@example.com"]
    beyond = await client.get(USERS, params={"offset": 50}, headers=admin.headers)
    assert (beyond.json()["items"], beyond.json()["total"]) == ([], 4)


async def test_admin_patch_rejects_null_flags(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.patch(
        f"{USERS}/{admin.id}", json={"is_active": None}, headers=admin.headers
    )
    body = assert_envelope(response, 422, "validation_error")
    assert body["details"][0]["field"] == "body.is_active"


async def test_malformed_user_id_is_422(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get(f"{USERS}/not-a-uuid", headers=admin.headers)
    assert_envelope(response, 422, "validation_error")
