"""Property tests: arbitrary text, bytes and JSON never get past validation as a 500."""

import contextlib
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.api.v1.schemas.items import ItemCreate, ItemUpdate
from app.api.v1.schemas.users import UserRegister
from app.config import load_settings
from app.core.security import InvalidTokenError, bearer_claims, decode_token
from tests.api.conftest import Account, make_account

SETTINGS = load_settings(_env_file=None, SECRET_KEY="property-test-secret-key-0123456789-abcdef")
FIXTURES_OK = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.text(max_size=300))
def test_safe_text_is_accepted_exactly_or_refused(text: str) -> None:
    try:
        item = ItemCreate(title=text[:255] or "t", description=text)
    except ValidationError:
        assert "\x00" in text or any("\ud800" <= c <= "\udfff" for c in text)
    else:
        assert item.description == text
        item.model_dump_json().encode("utf-8")  # always storable and serializable


@given(st.dictionaries(st.text(max_size=20), json_values, max_size=6))
def test_arbitrary_objects_validate_or_raise_validation_error(data: dict[str, Any]) -> None:
    for model in (ItemCreate, ItemUpdate, UserRegister):
        with contextlib.suppress(ValidationError):
            model.model_validate(data)


@given(st.text(max_size=400) | st.binary(max_size=400).map(lambda b: b.decode("latin-1")))
def test_token_decoder_only_raises_invalid_token(token: str) -> None:
    with pytest.raises(InvalidTokenError):
        decode_token(SETTINGS, token, "access")
    assert bearer_claims(SETTINGS, f"Bearer {token}") is None


@given(st.lists(st.text(max_size=60), min_size=3, max_size=3))
def test_token_decoder_refuses_jwt_shaped_noise(parts: list[str]) -> None:
    with pytest.raises(InvalidTokenError):
        decode_token(SETTINGS, ".".join(parts), "refresh")


@pytest.fixture
async def account(client: httpx.AsyncClient) -> Account:
    """Made once per test; hypothesis then runs the body many times with it."""
    return await make_account(client, "prop@example.com")


@FIXTURES_OK
@given(body=json_values)
async def test_item_create_never_500s_on_arbitrary_json(
    client: httpx.AsyncClient, account: Account, body: Any
) -> None:
    response = await client.post("/api/v1/items", json=body, headers=account.headers)
    assert response.status_code in (201, 422), response.text


@FIXTURES_OK
@given(
    raw=st.binary(max_size=200), content_type=st.sampled_from(["application/json", "text/plain"])
)
async def test_item_create_never_500s_on_arbitrary_bytes(
    client: httpx.AsyncClient, account: Account, raw: bytes, content_type: str
) -> None:
    response = await client.post(
        "/api/v1/items",
        content=raw,
        headers={**account.headers, "content-type": content_type},
    )
    assert response.status_code in (201, 400, 415, 422), response.text


@FIXTURES_OK
@given(item_id=st.text(max_size=40))
async def test_item_path_never_500s(
    client: httpx.AsyncClient, account: Account, item_id: str
) -> None:
    path = f"/api/v1/items/{quote(item_id, safe='')}"
    response = await client.get(path, headers=account.headers)
    assert response.status_code in (200, 307, 404, 405, 422), response.text
