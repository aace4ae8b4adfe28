"""Property tests: arbitrary text, bytes and JSON never get past validation as a 500."""

from typing import Any
from urllib.parse import quote

import httpx
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, example, given, settings
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
def test_an_accepted_object_is_taken_exactly_as_sent(data: dict[str, Any]) -> None:
    """Whatever validates has only the model's fields, and none was silently converted."""
    for model in (ItemCreate, ItemUpdate):
        try:
            parsed = model.model_validate(data)
        except ValidationError:
            continue
        assert set(data) <= set(model.model_fields)
        assert parsed.model_dump(exclude_unset=True) == data


@given(
    st.text(min_size=1, max_size=20).filter(lambda key: key not in UserRegister.model_fields),
    json_values,
)
def test_a_field_the_client_may_not_set_is_refused(key: str, value: Any) -> None:
    body = {"email": "a@example.com", "password": "long enough password"}
    UserRegister.model_validate(body)
    with pytest.raises(ValidationError) as refused:
        UserRegister.model_validate({**body, key: value})
    assert refused.value.errors()[0]["type"] == "extra_forbidden"


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


EMAIL_SCHEMA = UserRegister.model_json_schema()["properties"]["email"]
email_schema_admits = jsonschema_rs.validator_for(EMAIL_SCHEMA).is_valid


@example("!kn#ny5@rp6.d.test")  # found by Schemathesis: format-valid, refused by email-validator
@example("someone@mail.LOCALHOST")
@example("someone@test.example.org")
@given(st.emails())
def test_the_schema_admits_exactly_the_addresses_registration_accepts(address: str) -> None:
    try:
        UserRegister(email=address, password="long enough password")
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert email_schema_admits(address) == accepted, address
