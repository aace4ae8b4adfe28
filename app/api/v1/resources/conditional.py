"""Conditional requests (RFC 9110 section 13) on versioned resources: strong ETags.

An ETag is the row's version in quotes. A read declares `IfNoneMatchDep` and answers through
it (304 while the client's copy is current); a change declares `IfMatchDep`, hands its
`versions` to the writing statement, and answers through it (the new ETag).
"""

import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Response, status

from app.api.v1.schemas.common import error_responses
from app.models.base import Versioned
from app.repositories.owned import Versions

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


def if_match_versions(if_match: str | None) -> Versions:
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


@dataclass(frozen=True)
class IfMatchChange:
    """A change's precondition (`versions`, for the writing statement) and its answer."""

    versions: Versions
    response: Response

    def answer(self, row: M) -> M:
        """The changed row, with its new ETag."""
        self.response.headers["ETag"] = etag(row.version)
        return row


@dataclass(frozen=True)
class IfNoneMatchRead:
    if_none_match: str | None
    response: Response

    def answer(self, row: M) -> M | Response:
        """The row with its ETag, or a 304 when If-None-Match names its version (weak
        comparison, as RFC 9110 asks for If-None-Match)."""
        current = etag(row.version)
        header = self.if_none_match
        if header is not None and (
            header.strip() == "*" or any(tag == current[1:-1] for _, tag in _tags(header))
        ):
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": current})
        self.response.headers["ETag"] = current
        return row


async def if_match(response: Response, if_match: IfMatch = None) -> IfMatchChange:
    return IfMatchChange(if_match_versions(if_match), response)


async def if_none_match(response: Response, if_none_match: IfNoneMatch = None) -> IfNoneMatchRead:
    return IfNoneMatchRead(if_none_match, response)


IfMatchDep = Annotated[IfMatchChange, Depends(if_match)]
IfNoneMatchDep = Annotated[IfNoneMatchRead, Depends(if_none_match)]
