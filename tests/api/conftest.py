"""Accounts for API tests: a superuser created at start-up, and helpers to make more."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.api.owned_resources import OWNED_RESOURCES, Owned

PASSWORD = "correct horse battery staple"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin password 123"
ENVELOPE_KEYS = {"error", "message", "details", "request_id"}


@dataclass
class Account:
    email: str
    password: str
    id: str = ""
    access_token: str = ""
    refresh_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/token", data={"username": email, "password": password})


async def make_account(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any
) -> Account:
    """Register (unless it exists) and log in."""
    account = Account(email=email, password=password)
    created = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": password, **extra}
    )
    assert created.status_code in (201, 409), created.text
    tokens = await login(client, email, password)
    assert tokens.status_code == 200, tokens.text
    account.access_token = tokens.json()["access_token"]
    account.refresh_token = tokens.json()["refresh_token"]
    me = await client.get("/api/v1/users/me", headers=account.headers)
    account.id = me.json()["id"]
    return account


def assert_envelope(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ENVELOPE_KEYS
    assert body["error"] == error
    return body


def without_request_id(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    body.pop("request_id", None)
    return body


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(FIRST_SUPERUSER_EMAIL=ADMIN_EMAIL, FIRST_SUPERUSER_PASSWORD=ADMIN_PASSWORD)


@pytest.fixture
async def alice(client: httpx.AsyncClient) -> Account:
    return await make_account(client, "alice@example.com", full_name="Alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient) -> Account:
    return await make_account(client, "bob@example.com")


@pytest.fixture
async def admin(client: httpx.AsyncClient) -> Account:
    return await make_account(client, ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture(params=OWNED_RESOURCES, ids=lambda owned: owned.path.rsplit("/", 1)[-1])
def resource(request: pytest.FixtureRequest) -> Owned:
    """Each owned resource in turn (tests/api/owned_resources.py)."""
    owned: Owned = request.param
    return owned
