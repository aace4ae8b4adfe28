"""Cursor pagination (CONTRACT.md section 10): keyset pages that never repeat or skip a row, for
every owned resource (tests/api/owned_resources.py) and for the users list."""

from typing import Any

import httpx
import pytest

from tests.api.conftest import Account, assert_envelope, make_account
from tests.api.owned_resources import Owned

USERS = "/api/v1/users"


async def make_items(
    client: httpx.AsyncClient, resource: Owned, account: Account, count: int
) -> list[str]:
    """Create `count` rows; their ids, newest first (the order pages list them in)."""
    ids = []
    for number in range(count):
        body = resource.body(f"#{number}")
        created = await client.post(resource.path, json=body, headers=account.headers)
        ids.append(created.json()["id"])
    return ids[::-1]


async def follow(
    client: httpx.AsyncClient, account: Account, url: str, limit: int, between: Any = None
) -> list[dict[str, Any]]:
    """Every page from the first, by next_cursor; `between(n)` runs after page n."""
    pages = []
    response = await client.get(url, params={"limit": limit}, headers=account.headers)
    while True:
        assert response.status_code == 200, response.text
        pages.append(response.json())
        cursor = pages[-1]["next_cursor"]
        if cursor is None:
            return pages
        if between is not None:
            await between(len(pages))
        params = {"limit": limit, "cursor": cursor}
        response = await client.get(url, params=params, headers=account.headers)


async def test_following_cursors_lists_every_item_once_in_order(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    ids = await make_items(client, resource, alice, 7)
    pages = await follow(client, alice, resource.path, limit=3)
    assert [len(page["items"]) for page in pages] == [3, 3, 1]
    assert [item["id"] for page in pages for item in page["items"]] == ids
    assert pages[0]["offset"] == 0
    assert all(page["offset"] is None for page in pages[1:])
    assert all(page["total"] == 7 for page in pages)
    assert pages[-1]["next_cursor"] is None


async def test_an_exact_last_page_has_no_next_cursor(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    await make_items(client, resource, alice, 4)
    pages = await follow(client, alice, resource.path, limit=2)
    assert [len(page["items"]) for page in pages] == [2, 2]
    offset_page = await client.get(
        resource.path, params={"limit": 2, "offset": 2}, headers=alice.headers
    )
    assert offset_page.json()["next_cursor"] is None
    first = await client.get(resource.path, params={"limit": 2, "offset": 1}, headers=alice.headers)
    assert first.json()["next_cursor"] is not None  # an offset page offers a cursor too


async def test_writes_between_pages_never_repeat_or_skip_a_survivor(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    ids = await make_items(client, resource, alice, 10)
    deleted: set[str] = set()

    async def churn(page_number: int) -> None:
        # New items land before the cursor; deletions hit both sides of it.
        await client.post(resource.path, json=resource.body("new"), headers=alice.headers)
        for victim in (ids[page_number * 3 - 1], ids[-page_number]):
            if victim not in deleted:
                await client.delete(f"{resource.path}/{victim}", headers=alice.headers)
                deleted.add(victim)

    pages = await follow(client, alice, resource.path, limit=3, between=churn)
    seen = [item["id"] for page in pages for item in page["items"]]
    assert len(seen) == len(set(seen)), "an item was listed twice"
    survivors = [item_id for item_id in ids if item_id not in deleted]
    listed_originals = [item_id for item_id in seen if item_id in ids]
    assert listed_originals == [item_id for item_id in ids if item_id in seen], "out of order"
    assert set(survivors) <= set(seen), "an item that existed throughout was skipped"


async def test_cursor_with_offset_is_refused(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    await make_items(client, resource, alice, 3)
    cursor = (await client.get(resource.path, params={"limit": 1}, headers=alice.headers)).json()[
        "next_cursor"
    ]
    both = await client.get(
        resource.path, params={"cursor": cursor, "offset": 0}, headers=alice.headers
    )
    body = assert_envelope(both, 422, "validation_error")
    assert body["details"][0]["field"] == "query.cursor"


@pytest.mark.parametrize(
    "hostile",
    [
        "not-a-cursor",
        "A" * 2048,
        "\x00\x01\x02",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAA",
        "....",
        "é.é",
    ],
)
async def test_a_hostile_cursor_is_422_never_500(
    client: httpx.AsyncClient, resource: Owned, alice: Account, hostile: str
) -> None:
    response = await client.get(resource.path, params={"cursor": hostile}, headers=alice.headers)
    assert_envelope(response, 422, "validation_error")


async def test_a_flipped_character_is_refused(
    client: httpx.AsyncClient, resource: Owned, alice: Account
) -> None:
    await make_items(client, resource, alice, 3)
    page = await client.get(resource.path, params={"limit": 1}, headers=alice.headers)
    cursor: str = page.json()["next_cursor"]
    for index in range(len(cursor)):
        flipped = "B" if cursor[index] != "B" else "C"
        tampered = cursor[:index] + flipped + cursor[index + 1 :]
        response = await client.get(
            resource.path, params={"cursor": tampered}, headers=alice.headers
        )
        assert response.status_code == 422, (index, tampered)


async def test_another_users_cursor_shows_only_ones_own_items(
    client: httpx.AsyncClient, resource: Owned, alice: Account, bob: Account
) -> None:
    await make_items(client, resource, alice, 3)
    mine = await make_items(client, resource, bob, 3)
    theirs = await client.get(resource.path, params={"limit": 1}, headers=alice.headers)
    borrowed = await client.get(
        resource.path, params={"cursor": theirs.json()["next_cursor"]}, headers=bob.headers
    )
    assert borrowed.status_code == 200
    assert {item["owner_id"] for item in borrowed.json()["items"]} <= {bob.id}
    assert {item["id"] for item in borrowed.json()["items"]} <= set(mine)


async def test_a_users_cursor_does_not_page_items(
    client: httpx.AsyncClient, resource: Owned, admin: Account
) -> None:
    for number in range(3):
        await make_account(client, f"u{number}@example.com")
    users = await client.get(USERS, params={"limit": 1}, headers=admin.headers)
    cursor = users.json()["next_cursor"]
    assert cursor is not None
    response = await client.get(resource.path, params={"cursor": cursor}, headers=admin.headers)
    assert_envelope(response, 422, "validation_error")


async def test_users_page_by_cursor_too(client: httpx.AsyncClient, admin: Account) -> None:
    for number in range(4):
        await make_account(client, f"user{number}@example.com")
    everyone = (await client.get(USERS, params={"limit": 100}, headers=admin.headers)).json()
    pages = await follow(client, admin, USERS, limit=2)
    listed = [user["id"] for page in pages for user in page["items"]]
    assert listed == [user["id"] for user in everyone["items"]]
    assert len(listed) == everyone["total"] == 5


@pytest.mark.parametrize("stray", ["!", "=", "+", "/", " ", "*", "A", "=="])
async def test_a_cursor_with_a_stray_character_inserted_is_refused(
    client: httpx.AsyncClient, resource: Owned, alice: Account, stray: str
) -> None:
    """base64 that skips characters it does not know would read these as the issued cursor."""
    await make_items(client, resource, alice, 3)
    page = await client.get(resource.path, params={"limit": 1}, headers=alice.headers)
    cursor: str = page.json()["next_cursor"]
    for index in range(len(cursor) + 1):
        altered = cursor[:index] + stray + cursor[index:]
        params = {"cursor": altered}
        response = await client.get(resource.path, params=params, headers=alice.headers)
        assert_envelope(response, 422, "validation_error")
