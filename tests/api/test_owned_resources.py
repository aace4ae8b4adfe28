"""No way to reach another user's rows, for every owned resource (tests/api/owned_resources.py):
a user lists, reads, changes and deletes their own; a superuser sees everybody's."""

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.conftest import Account, assert_envelope, without_request_id
from tests.api.owned_resources import Owned


async def create(
    client: httpx.AsyncClient, resource: Owned, account: Account, value: str
) -> dict[str, Any]:
    response = await client.post(resource.path, json=resource.body(value), headers=account.headers)
    assert response.status_code == 201, response.text
    assert response.json()["owner_id"] == account.id
    created: dict[str, Any] = response.json()
    return created


async def test_list_shows_own_rows_but_superuser_sees_all(
    client: httpx.AsyncClient, resource: Owned, alice: Account, bob: Account, admin: Account
) -> None:
    await create(client, resource, alice, "alice's")
    await create(client, resource, bob, "bob's")
    mine = (await client.get(resource.path, headers=alice.headers)).json()
    assert [row[resource.text] for row in mine["items"]] == ["alice's"]
    assert mine["total"] == 1
    everything = (await client.get(resource.path, headers=admin.headers)).json()
    assert [row[resource.text] for row in everything["items"]] == ["bob's", "alice's"]
    assert everything["total"] == 2


@pytest.mark.parametrize("verb", ["GET", "PATCH", "DELETE"])
async def test_another_users_row_is_indistinguishable_from_a_missing_one(
    client: httpx.AsyncClient,
    resource: Owned,
    alice: Account,
    bob: Account,
    cleanup_engine: AsyncEngine,
    *,
    verb: str,
) -> None:
    bobs = await create(client, resource, bob, "bob's secret")
    url = f"{resource.path}/{bobs['id']}"
    body = resource.body("pwned") if verb == "PATCH" else None
    as_alice = await client.request(verb, url, json=body, headers=alice.headers)
    assert_envelope(as_alice, 404, "not_found")
    # Bob's row is untouched.
    model = resource.model
    async with cleanup_engine.connect() as conn:
        row = (await conn.execute(select(model).where(model.id == uuid.UUID(bobs["id"])))).one()
    assert (getattr(row, resource.text), row.version) == ("bob's secret", 1)
    # Now the row really is missing: the answer is the same, byte for byte, bar request_id.
    assert (await client.delete(url, headers=bob.headers)).status_code == 204
    missing = await client.request(verb, url, json=body, headers=alice.headers)
    assert without_request_id(as_alice) == without_request_id(missing)
    assert as_alice.headers.get("content-length") == missing.headers.get("content-length")


async def test_a_superuser_reads_changes_and_deletes_anyones_row(
    client: httpx.AsyncClient, resource: Owned, alice: Account, admin: Account
) -> None:
    url = f"{resource.path}/{(await create(client, resource, alice, 'hers'))['id']}"
    assert (await client.get(url, headers=admin.headers)).status_code == 200
    changed = await client.patch(url, json=resource.body("fixed"), headers=admin.headers)
    assert (changed.status_code, changed.json()["owner_id"]) == (200, alice.id)
    assert (await client.delete(url, headers=admin.headers)).status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404


async def test_rows_need_authentication(client: httpx.AsyncClient, resource: Owned) -> None:
    for verb, url in (("GET", resource.path), ("POST", resource.path)):
        response = await client.request(verb, url, json=resource.body("x"))
        assert_envelope(response, 401, "unauthorized")
