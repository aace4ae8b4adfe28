"""Pooled connections per request: one for an authenticated read, never two at once."""

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from sqlalchemy import event

from app.api.v1 import endpoints
from app.dependencies import get_read_connection, get_reader, get_session
from tests.api.conftest import Account


def calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from calls(dependency)


def endpoint_routes() -> Iterator[APIRoute]:
    """Every route of every module in app/api/v1/endpoints (a forker's new one included)."""
    for module in pkgutil.iter_modules(endpoints.__path__):
        router = importlib.import_module(f"{endpoints.__name__}.{module.name}").router
        yield from (route for route in router.routes if isinstance(route, APIRoute))


def test_no_endpoint_that_writes_holds_the_read_connection() -> None:
    """ReaderDep and ReadConnectionDep hold a read connection: beside SessionDep's (WriterDep)
    that would be two at once."""
    routes = list(endpoint_routes())
    readers = [
        route for route in routes if {get_read_connection, get_reader} & set(calls(route.dependant))
    ]
    assert {route.name for route in readers} >= {"list_items", "read_item", "list_users"}
    assert {"list_items", "read_item"} <= {
        route.name for route in readers if get_reader in set(calls(route.dependant))
    }
    for route in readers:
        assert get_session not in set(calls(route.dependant)), route.path


async def get_counting_checkouts(
    app: FastAPI, client: httpx.AsyncClient, path: str, account: Account
) -> tuple[httpx.Response, int]:
    """GET `path` as `account`; the answer and how many pooled connections it checked out."""
    checkouts: list[object] = []
    pool = app.state.engine.sync_engine.pool

    def count(*_: object) -> None:
        checkouts.append(object())

    event.listen(pool, "checkout", count)
    try:
        response = await client.get(path, headers=account.headers)
    finally:
        event.remove(pool, "checkout", count)
    return response, len(checkouts)


@pytest.mark.parametrize("path", ["/api/v1/items?limit=5", "/api/v1/users/me"])
async def test_an_authenticated_read_checks_out_one_connection(
    app: FastAPI, client: httpx.AsyncClient, alice: Account, path: str
) -> None:
    await client.get(path, headers=alice.headers)  # warm: the first request may connect
    response, checkouts = await get_counting_checkouts(app, client, path, alice)
    assert response.status_code == 200
    assert checkouts == 1


async def test_reading_an_item_shares_one_connection_between_caller_and_session(
    app: FastAPI, client: httpx.AsyncClient, alice: Account
) -> None:
    """read_item looks the caller up on the read connection and the item through an ORM session
    on that same connection: one checkout."""
    created = await client.post("/api/v1/items", json={"title": "mine"}, headers=alice.headers)
    path = f"/api/v1/items/{created.json()['id']}"
    response, checkouts = await get_counting_checkouts(app, client, path, alice)
    assert response.status_code == 200
    assert response.json()["title"] == "mine"
    assert checkouts == 1
