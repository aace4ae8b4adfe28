"""The cursor codec: what it issues round-trips; anything else is refused, never a crash."""

import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.api.v1.resources import cursors
from app.api.v1.resources.cursors import InvalidCursorError, Position
from app.core.keys import derive

KEY = derive("cursor-test-secret-0123456789-abcdefghijklmnop", "cursor")
positions = st.builds(
    Position,
    st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
    ),
    st.uuids(),
)


def encode(position: Position, collection: str = "items") -> str:
    return cursors.encode(position, key=KEY, collection=collection)


def decode(cursor: str, collection: str = "items") -> Position:
    return cursors.decode(cursor, keys=[KEY], collection=collection)


@given(positions)
def test_an_issued_cursor_round_trips(position: Position) -> None:
    cursor = encode(position)
    assert decode(cursor) == position
    assert cursor.isascii()
    assert len(cursor) <= cursors.MAX_CURSOR_LENGTH


@given(positions, st.data())
def test_any_changed_character_is_refused(position: Position, data: st.DataObject) -> None:
    cursor = encode(position)
    index = data.draw(st.integers(0, len(cursor) - 1))
    replacement = data.draw(st.characters().filter(lambda char: char != cursor[index]))
    with pytest.raises(InvalidCursorError):
        decode(cursor[:index] + replacement + cursor[index + 1 :])


@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda raw: raw.decode("latin-1")))
def test_noise_is_refused(noise: str) -> None:
    with pytest.raises(InvalidCursorError):
        decode(noise)


@given(positions)
def test_a_cursor_belongs_to_its_collection_and_key(position: Position) -> None:
    with pytest.raises(InvalidCursorError):
        decode(encode(position, "users"), "items")
    with pytest.raises(InvalidCursorError):
        cursors.decode(encode(position), keys=[KEY + b"x"], collection="items")


def test_a_long_cursor_is_refused_before_any_decoding() -> None:
    cursor = encode(Position(datetime.now(UTC), uuid.uuid4()))
    with pytest.raises(InvalidCursorError):
        decode(cursor + "A" * 2048)
