"""Items: CRUD, pagination and validation (the guarantees every owned resource shares, owner
isolation included, are in test_owned_resources.py, test_safe_writes.py, test_cursor_pages.py)."""

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from app.models import Item
from tests.api.conftest import Account, assert_envelope

ITEMS = "/api/v1/items"


async def create(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    response = await client.post(ITEMS, json={"title": "An item", **body}, headers=account.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def test_create_returns_item_and_location(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.post(
        ITEMS, json={"title": "Milk", "description": "2 litres"}, headers=alice.headers
    )
    assert response.status_code == 201
    item = response.json()
    assert set(item) == {"id", "title", "description", "owner_id", "created_at", "updated_at"}
    assert (item["title"], item["description"], item["owner_id"]) == ("Milk", "2 litres", alice.id)
    assert response.headers["location"] == f"{ITEMS}/{item['id']}"
    fetched = await client.get(response.headers["location"], headers=alice.headers)
    assert fetched.json() == item


async def test_read_update_delete(client: httpx.AsyncClient, alice: Account) -> None:
    item = await create(client, alice, description="old")
    url = f"{ITEMS}/{item['id']}"
    patched = await client.patch(url, json={"title": "New title"}, headers=alice.headers)
    assert patched.status_code == 200
    body = patched.json()
    assert (body["title"], body["description"]) == ("New title", "old")
    assert body["updated_at"] > item["updated_at"]
    assert body["created_at"] == item["created_at"]
    cleared = await client.patch(url, json={"description": None}, headers=alice.headers)
    assert cleared.json()["description"] is None
    assert (await client.delete(url, headers=alice.headers)).status_code == 204
    assert_envelope(await client.get(url, headers=alice.headers), 404, "not_found")


async def test_list_is_newest_first_with_totals(client: httpx.AsyncClient, alice: Account) -> None:
    ids = [(await create(client, alice, title=f"item {n}"))["id"] for n in range(5)]
    page = await client.get(ITEMS, params={"limit": 2}, headers=alice.headers)
    assert page.status_code == 200
    body = page.json()
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 0)
    assert [i["id"] for i in body["items"]] == ids[::-1][:2]
    rest = await client.get(ITEMS, params={"limit": 10, "offset": 2}, headers=alice.headers)
    assert [i["id"] for i in rest.json()["items"]] == ids[::-1][2:]
    beyond = await client.get(ITEMS, params={"offset": 40}, headers=alice.headers)
    assert (beyond.json()["items"], beyond.json()["total"]) == ([], 5)
    default = (await client.get(ITEMS, headers=alice.headers)).json()
    assert (default["limit"], default["offset"]) == (20, 0)


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 101},
        {"limit": -1},
        {"limit": "abc"},
        {"offset": -1},
        {"offset": "abc"},
        {"offset": 100_001},
    ],
)
async def test_pagination_bounds(
    client: httpx.AsyncClient, alice: Account, params: dict[str, object]
) -> None:
    response = await client.get(ITEMS, params=params, headers=alice.headers)
    body = assert_envelope(response, 422, "validation_error")
    assert body["details"][0]["field"] == f"query.{next(iter(params))}"


async def test_pagination_limits_accepted(client: httpx.AsyncClient, alice: Account) -> None:
    for params in ({"limit": 1}, {"limit": 100}, {"offset": 100_000}):
        assert (await client.get(ITEMS, params=params, headers=alice.headers)).status_code == 200


async def test_unknown_item_is_404(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get(f"{ITEMS}/{uuid.uuid4()}", headers=alice.headers)
    assert_envelope(response, 404, "not_found")


async def test_malformed_item_id_is_422(client: httpx.AsyncClient, alice: Account) -> None:
    response = await client.get(f"{ITEMS}/not-a-uuid", headers=alice.headers)
    body = assert_envelope(response, 422, "validation_error")
    assert body["details"][0]["field"] == "path.item_id"


@pytest.mark.parametrize(
    "body",
    [
        {"title": ""},
        {"title": "x" * 256},
        {"description": "x" * 10_001},
        {"title": "nul\u0000byte"},
        {"title": "ok", "description": "nul\u0000byte"},
        {"title": None},
        {"title": "ok", "id": str(uuid.uuid4())},
        {"title": "ok", "owner_id": str(uuid.uuid4())},
        {"title": "ok", "created_at": "2020-01-01T00:00:00Z"},
        {"title": "ok", "updated_at": "2020-01-01T00:00:00Z"},
        {"title": 123},
        {},
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, alice: Account, cleanup_engine: AsyncEngine, body: dict[str, object]
) -> None:
    response = await client.post(ITEMS, json=body, headers=alice.headers)
    assert_envelope(response, 422, "validation_error")
    async with cleanup_engine.connect() as conn:
        assert (await conn.execute(select(Item))).first() is None


@pytest.mark.parametrize("field", ["title", "description"])
async def test_lone_surrogates_are_refused(
    client: httpx.AsyncClient, alice: Account, field: str
) -> None:
    raw = '{"title": "ok", "%s": "bad \\udc80 text"}' % field  # noqa: UP031
    response = await client.post(
        ITEMS, content=raw.encode(), headers={**alice.headers, "content-type": "application/json"}
    )
    assert_envelope(response, 422, "validation_error")


@pytest.mark.parametrize(
    "body",
    [{"owner_id": str(uuid.uuid4())}, {"id": str(uuid.uuid4())}, {"title": None}, {"title": ""}],
)
async def test_patch_validation_leaves_row_unchanged(
    client: httpx.AsyncClient, alice: Account, body: dict[str, object]
) -> None:
    item = await create(client, alice)
    url = f"{ITEMS}/{item['id']}"
    assert_envelope(
        await client.patch(url, json=body, headers=alice.headers), 422, "validation_error"
    )
    assert (await client.get(url, headers=alice.headers)).json() == item


@pytest.mark.parametrize(
    "text",
    [
        "emoji 🧭🚢 and flags 🇳🇱",
        "right\u200fto\u200eleft עברית العربية",
        "combining e\u0301 a\u0308 and Å",
        "'; DROP TABLE items; --",
        '" OR 1=1 --',
        "%_ wildcard \\ backslash",
        "x" * 255,
    ],
)
async def test_text_round_trips_exactly(
    client: httpx.AsyncClient, alice: Account, text: str
) -> None:
    item = await create(client, alice, title=text[:255], description=text)
    fetched = (await client.get(f"{ITEMS}/{item['id']}", headers=alice.headers)).json()
    assert (fetched["title"], fetched["description"]) == (text[:255], text)


async def test_items_need_authentication(client: httpx.AsyncClient) -> None:
    for method, path in [("GET", ITEMS), ("POST", ITEMS), ("GET", f"{ITEMS}/{uuid.uuid4()}")]:
        response = await client.request(method, path, json={"title": "x"})
        assert_envelope(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


async def test_trailing_slash_redirects_to_collection(
    client: httpx.AsyncClient, alice: Account
) -> None:
    response = await client.get(f"{ITEMS}/", headers=alice.headers)
    assert response.status_code in (307, 308)
    assert response.headers["location"].endswith(ITEMS)


async def test_405_lists_all_methods_of_a_path(client: httpx.AsyncClient) -> None:
    response = await client.put(ITEMS, json={})
    assert_envelope(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "GET, POST"
    one = await client.put(f"{ITEMS}/{uuid.uuid4()}", json={})
    assert one.headers["allow"] == "DELETE, GET, PATCH"
