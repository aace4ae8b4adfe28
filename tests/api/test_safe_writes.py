"""Writes that lose nothing (CONTRACT.md section 10): idempotency keys and conditional requests,
for every owned resource (tests/api/owned_resources.py)."""

import asyncio
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import IdempotencyRecord
from app.models.base import OwnedResource, utc_now
from tests.api.conftest import Account, assert_envelope, without_request_id
from tests.api.owned_resources import Owned


async def count_rows(engine: AsyncEngine, model: type[OwnedResource]) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(select(func.count()).select_from(model)) or 0


def keyed(account: Account, key: str) -> dict[str, str]:
    return {**account.headers, "Idempotency-Key": key}


# --- Idempotency-Key ------------------------------------------------------------------------


async def test_a_retry_gets_the_first_answer_and_creates_nothing(
    client: httpx.AsyncClient, resource: Owned, alice: Account, cleanup_engine: AsyncEngine
) -> None:
    body = resource.body("Pay the rent")
    first = await client.post(resource.path, json=body, headers=keyed(alice, "rent-2026-12"))
    retry = await client.post(resource.path, json=body, headers=keyed(alice, "rent-2026-12"))
    assert first.status_code == retry.status_code == 201
    assert retry.content == first.content
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["etag"] == first.headers["etag"] == '"1"'
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count_rows(cleanup_engine, resource.model) == 1
    fetched = await client.get(first.headers["location"], headers=alice.headers)
    assert fetched.json() == first.json()


async def test_the_same_key_with_another_body_is_refused(
    client: httpx.AsyncClient, resource: Owned, alice: Account, cleanup_engine: AsyncEngine
) -> None:
    await client.post(resource.path, json=resource.body("Milk"), headers=keyed(alice, "k1"))
    reused = await client.post(
        resource.path, json=resource.body("Bread"), headers=keyed(alice, "k1")
    )
    body = assert_envelope(reused, 422, "idempotency_key_reused")
    assert "Idempotency-Key" in body["message"]
    assert await count_rows(cleanup_engine, resource.model) == 1


async def test_the_same_body_means_the_same_request_however_it_is_spelled(
    client: httpx.AsyncClient, resource: Owned, alice: Account, cleanup_engine: AsyncEngine
) -> None:
    body = resource.body("Milk")
    await client.post(resource.path, json=body, headers=keyed(alice, "k"))
    spelled = json.dumps(dict(reversed(body.items())), indent=3).encode()  # the same JSON value
    headers = {**keyed(alice, "k"), "Content-Type": "application/json"}
    retry = await client.post(resource.path, content=spelled, headers=headers)
    assert retry.status_code == 201
    assert retry.headers["idempotent-replayed"] == "true"
    assert await count_rows(cleanup_engine, resource.model) == 1


async def test_keys_belong_to_their_user(
    client: httpx.AsyncClient,
    resource: Owned,
    alice: Account,
    bob: Account,
    cleanup_engine: AsyncEngine,
) -> None:
    mine = await client.post(
        resource.path, json=resource.body("Milk"), headers=keyed(alice, "shared")
    )
    theirs = await client.post(
        resource.path, json=resource.body("Milk"), headers=keyed(bob, "shared")
    )
    assert mine.status_code == theirs.status_code == 201
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["owner_id"] == bob.id
    assert await count_rows(cleanup_engine, resource.model) == 2


async def test_without_a_key_each_post_creates(
    client: httpx.AsyncClient, resource: Owned, alice: Account, cleanup_engine: AsyncEngine
) -> None:
    for _ in range(2):
        response = await client.post(
            resource.path, json=resource.body("Milk"), headers=alice.headers
        )
        assert response.status_code == 201
        assert "idempotent-replayed" not in response.headers
    assert await count_rows(cleanup_engine, resource.model) == 2


async def test_a_key_is_forgotten_after_24_hours(
    client: httpx.AsyncClient, resource: Owned, alice: Account, cleanup_engine: AsyncEngine
) -> None:
    await client.post(resource.path, json=resource.body("Milk"), headers=keyed(alice, "old"))
    async with cleanup_engine.begin() as connection:
        await connection.execute(
            update(IdempotencyRecord).values(created_at=utc_now() - timedelta(hours=24, minutes=1))
        )
    again = await client.post(
        resource.path, json=resource.body("Milk"), headers=keyed(alice, "old")
    )
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers
    assert await count_rows(cleanup_engine, resource.model) == 2
    async with cleanup_engine.connect() as connection:  # the expired answer is gone
        created = await connection.scalar(select(IdempotencyRecord.created_at))
        assert created is not None
        assert utc_now() - created.replace(tzinfo=created.tzinfo) < timedelta(minutes=5)


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "tab\there"])
async def test_a_malformed_key_is_refused(
    client: httpx.AsyncClient,
    resource: Owned,
    alice: Account,
    cleanup_engine: AsyncEngine,
    key: str,
) -> None:
    headers: dict[str, str | bytes] = {**alice.headers, "Idempotency-Key": key.encode()}
    response = await client.post(resource.path, json=resource.body("Milk"), headers=headers)
    body = assert_envelope(response, 422, "validation_error")
    assert body["details"][0]["field"] == "header.Idempotency-Key"
    assert await count_rows(cleanup_engine, resource.model) == 0


async def test_concurrent_retries_create_one_item(
    client: httpx.AsyncClient, resource: Owned, alice: Account, cleanup_engine: AsyncEngine
) -> None:
    body = resource.body("Once")
    responses = await asyncio.gather(
        *(client.post(resource.path, json=body, headers=keyed(alice, "storm")) for _ in range(10))
    )
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {201, 409}, statuses
    created = [response for response in responses if response.status_code == 201]
    assert created
    assert {response.json()["id"] for response in created} == {created[0].json()["id"]}
    for response in responses:
        if response.status_code == 409:
            assert response.json()["error"] == "conflict"
    assert await count_rows(cleanup_engine, resource.model) == 1
    late = await client.post(resource.path, json=body, headers=keyed(alice, "storm"))
    assert late.headers["idempotent-replayed"] == "true"
    assert late.json()["id"] == created[0].json()["id"]


# --- ETag, If-None-Match, If-Match ----------------------------------------------------------


async def new_item(client: httpx.AsyncClient, resource: Owned, account: Account) -> tuple[str, str]:
    created = await client.post(resource.path, json=resource.body("Draft"), headers=account.headers)
    return created.headers["location"], created.headers["etag"]


async def test_every_change_changes_the_etag(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    url, created = await new_item(client, resource, alice)
    read = await client.get(url, headers=alice.headers)
    assert read.headers["etag"] == created
    patched = await client.patch(url, json=resource.body("Final"), headers=alice.headers)
    again = await client.patch(url, json=resource.body("Final"), headers=alice.headers)
    tags = [created, patched.headers["etag"], again.headers["etag"]]
    assert len(set(tags)) == 3
    assert all(tag.startswith('"') and tag.endswith('"') for tag in tags)  # strong
    assert (await client.get(url, headers=alice.headers)).headers["etag"] == tags[-1]


async def test_a_current_if_none_match_is_304_without_a_body(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    url, etag = await new_item(client, resource, alice)
    for header in (etag, f'"0", {etag}', f"W/{etag}", "*"):
        response = await client.get(url, headers={**alice.headers, "If-None-Match": header})
        assert response.status_code == 304, header
        assert response.content == b""
        assert response.headers["etag"] == etag
    stale = await client.get(url, headers={**alice.headers, "If-None-Match": '"999"'})
    assert stale.status_code == 200
    assert stale.json()[resource.text] == "Draft"


async def test_a_stale_if_match_changes_nothing(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    url, old = await new_item(client, resource, alice)
    await client.patch(url, json=resource.body("Theirs"), headers=alice.headers)
    for method in ("PATCH", "DELETE"):
        response = await client.request(
            method, url, json=resource.body("Mine") if method == "PATCH" else None,
            headers={**alice.headers, "If-Match": old},
        )  # fmt: skip
        assert_envelope(response, 412, "precondition_failed")
    current = await client.get(url, headers=alice.headers)
    assert current.json()[resource.text] == "Theirs"
    weak = await client.patch(
        url, json=resource.body("Mine"), headers={**alice.headers, "If-Match": f"W/{old}"}
    )
    assert weak.status_code == 412  # If-Match compares strongly


async def test_a_current_if_match_or_a_star_lets_the_write_through(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    url, etag = await new_item(client, resource, alice)
    patched = await client.patch(
        url, json=resource.body("Mine"), headers={**alice.headers, "If-Match": f'"77", {etag}'}
    )
    assert patched.status_code == 200
    assert patched.json()[resource.text] == "Mine"
    starred = await client.patch(
        url, json=resource.body("Any"), headers={**alice.headers, "If-Match": "*"}
    )
    assert starred.status_code == 200
    deleted = await client.delete(
        url, headers={**alice.headers, "If-Match": starred.headers["etag"]}
    )
    assert deleted.status_code == 204
    assert (await client.get(url, headers=alice.headers)).status_code == 404


async def test_if_match_on_another_users_item_is_a_plain_404(
    client: httpx.AsyncClient, resource: Owned, alice: Account, bob: Account
) -> None:
    url, etag = await new_item(client, resource, alice)
    missing = f"{resource.path}/00000000-0000-4000-8000-000000000000"
    for target in (url, missing):
        for header in (etag, '"999"', "*"):
            response = await client.patch(
                target, json=resource.body("x"), headers={**bob.headers, "If-Match": header}
            )
            assert_envelope(response, 404, "not_found")
    theirs = await client.delete(url, headers={**bob.headers, "If-Match": etag})
    gone = await client.delete(missing, headers={**bob.headers, "If-Match": etag})
    assert without_request_id(theirs)["error"] == without_request_id(gone)["error"] == "not_found"


async def test_concurrent_patches_with_one_if_match_give_one_200_and_one_412(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    url, etag = await new_item(client, resource, alice)
    headers = {**alice.headers, "If-Match": etag}
    first, second = await asyncio.gather(
        client.patch(url, json=resource.body("A"), headers=headers),
        client.patch(url, json=resource.body("B"), headers=headers),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 412]
    winner = first if first.status_code == 200 else second
    current = await client.get(url, headers=alice.headers)
    assert current.json()[resource.text] == winner.json()[resource.text]
    assert current.headers["etag"] == winner.headers["etag"] == '"2"'


async def test_the_openapi_document_names_the_headers_and_errors(
    client: httpx.AsyncClient,
    resource: Owned,
) -> None:
    paths = (await client.get("/api/v1/openapi.json")).json()["paths"]

    def headers_of(operation: dict[str, Any]) -> set[str]:
        return {p["name"].lower() for p in operation["parameters"] if p["in"] == "header"}

    (one,) = (path for path in paths if path.startswith(f"{resource.path}/{{"))
    create, read = paths[resource.path]["post"], paths[one]["get"]
    patch, delete = paths[one]["patch"], paths[one]["delete"]
    assert "idempotency-key" in headers_of(create)
    assert {"409", "422"} <= set(create["responses"])
    assert "if-none-match" in headers_of(read)
    assert "ETag" in read["responses"]["200"]["headers"]
    assert "304" in read["responses"]
    for operation in (patch, delete):
        assert "if-match" in headers_of(operation)
        assert "412" in operation["responses"]
    assert "ETag" in patch["responses"]["200"]["headers"]


@pytest.mark.parametrize(
    "tag",
    [
        '"²"',  # a digit to str.isdigit(), not to int()
        '"0003"',  # not the tag the service sent ("3"): strong comparison is of the exact string
        '"2147483648"',  # past PostgreSQL's integer
        '"9223372036854775808"',  # past SQLite's integer
        '"' + "9" * 4400 + '"',  # past Python's int() digit limit
        '"-1"',
        '" 1"',
    ],
    ids=["latin1-digit", "leading-zeros", "int4-overflow", "int8-overflow", "huge", "neg", "space"],
)
async def test_a_malformed_or_impossible_if_match_is_a_412_never_a_500(
    client: httpx.AsyncClient, resource: Owned, alice: Account, tag: str
) -> None:
    url, _ = await new_item(client, resource, alice)
    for _ in range(2):  # version 1, then 3 ("0003" names it too, but not as the service spells it)
        await client.patch(url, json=resource.body("Again"), headers=alice.headers)
    headers = {**alice.headers, "If-Match": tag.encode("latin-1")}  # bytes: "²" is not ASCII
    patched = await client.patch(url, json=resource.body("Changed"), headers=headers)
    assert_envelope(patched, 412, "precondition_failed")
    assert_envelope(await client.delete(url, headers=headers), 412, "precondition_failed")
    current = await client.get(url, headers=alice.headers)
    assert (current.json()[resource.text], current.headers["etag"]) == ("Again", '"3"')
    unmatched = await client.get(
        url, headers={**alice.headers, "If-None-Match": tag.encode("latin-1")}
    )
    assert unmatched.status_code == 200
