"""Conditional requests (RFC 9110 section 13) on versioned resources: strong ETags.

An ETag is the row's version in quotes; `If-None-Match` on a read answers 304 while it is
current, `If-Match` on a write names the versions the client last saw (`*`: any).
"""

import re
from typing import Annotated, Any, TypeVar

from fastapi import Header, Response, status

from app.api.v1.schemas.common import error_responses
from app.models.base import Versioned

M = TypeVar("M", bound=Versioned)

IfMatch = Annotated[
    str | None,
    Header(description='Change only if the ETag is still one of these (e.g. `"3"`), or `*`'),
]
IfNoneMatch = Annotated[
    str | None, Header(description="Answer 304 if the ETag is still one of these, or `*`")
]
_ENTITY_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')
# The tags this service sends: a version in plain ASCII digits, no leading zero, within the
# column's range. Any other tag names a version that cannot exist, so it matches nothing.
_VERSION = re.compile(r"[1-9][0-9]{0,9}")
MAX_VERSION = 2**31 - 1  # PostgreSQL's integer

ETAG_HEADER = {"ETag": {"description": "The current version", "schema": {"type": "string"}}}
PRECONDITION_FAILED = error_responses({412: "Changed since the If-Match ETag"})
# OpenAPI `responses` of a conditional read and of a conditional change.
CONDITIONAL_READ: dict[int | str, dict[str, Any]] = {
    200: {"headers": ETAG_HEADER},
    304: {"description": "Not modified: the If-None-Match ETag is current", "headers": ETAG_HEADER},
}
CONDITIONAL_CHANGE = {200: {"headers": ETAG_HEADER}, **PRECONDITION_FAILED}


def etag(version: int) -> str:
    return f'"{version}"'


def _tags(header: str) -> list[tuple[bool, str]]:
    """(weak, opaque tag) of each entity tag in a list header; malformed entries are dropped."""
    return [(bool(weak), tag) for weak, tag in _ENTITY_TAG.findall(header)]


def if_match_versions(if_match: str | None) -> frozenset[int] | None:
    """The versions a write may change; None when any will do (no If-Match, or `*`).

    If-Match compares strongly, as the exact string sent: a weak, malformed or impossible tag
    matches nothing, and the write gets 412.
    """
    if if_match is None or if_match.strip() == "*":
        return None
    return frozenset(
        version
        for weak, tag in _tags(if_match)
        if not weak and _VERSION.fullmatch(tag) and (version := int(tag)) <= MAX_VERSION
    )


def read(row: M, response: Response, if_none_match: str | None) -> M | Response:
    """The row with its ETag, or a 304 when If-None-Match names its version (weak comparison)."""
    current = etag(row.version)
    if if_none_match is not None and (
        if_none_match.strip() == "*" or any(tag == current[1:-1] for _, tag in _tags(if_none_match))
    ):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": current})
    response.headers["ETag"] = current
    return row
