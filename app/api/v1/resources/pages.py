"""Pages of a collection: `limit` with `offset`, or with the `cursor` the previous page gave.

`PageParams` is the one parameter a list endpoint declares: it reads the three query
parameters, checks them, and binds cursors to the route they came from.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request
from fastapi.exceptions import RequestValidationError

from app.api.v1.resources import cursors
from app.api.v1.resources.cursors import InvalidCursorError, Position
from app.api.v1.schemas.common import LimitQuery, OffsetQuery
from app.core.keys import Keyring
from app.repositories.pages import PageRows

CursorQuery = Annotated[
    str | None,
    Query(
        max_length=cursors.MAX_CURSOR_LENGTH,
        description="The previous page's `next_cursor`: the next page, by keyset, at any depth",
    ),
]


def _refuse(message: str, cursor: str) -> RequestValidationError:
    error = {"type": "value_error", "loc": ("query", "cursor"), "msg": message, "input": cursor}
    return RequestValidationError([error])


@dataclass(frozen=True)
class PageRequest:
    """What a client asked for, checked: where the page starts, and how to sign the next one."""

    collection: str
    limit: int
    offset: int | None
    after: Position | None
    keys: Keyring

    def answer(self, page: PageRows) -> dict[str, Any]:
        """The `Page` body, with the cursor of the page's last row when more follow."""
        next_cursor = None
        if page.has_more:
            last = page.rows[-1]
            position = Position(last.created_at, last.id)
            key = self.keys.current.cursor
            next_cursor = cursors.encode(position, key=key, collection=self.collection)
        return {
            "items": page.rows,
            "total": page.total,
            "limit": self.limit,
            "offset": self.offset,
            "next_cursor": next_cursor,
        }


async def page_request(
    request: Request,
    limit: LimitQuery = 20,
    offset: OffsetQuery = None,
    cursor: CursorQuery = None,
) -> PageRequest:
    """The paging parameters, checked; a cursor with an offset, or another route's, is 422."""
    collection = request.url.path  # a cursor works only on the collection that issued it
    keys: Keyring = request.app.state.settings.keys  # derived once, at start-up
    if cursor is None:
        return PageRequest(collection, limit, offset or 0, None, keys)
    if offset is not None:
        raise _refuse("Send either cursor or offset, not both", cursor)
    try:
        verifying = (key.cursor for key in keys.verifying)
        after = cursors.decode(cursor, keys=verifying, collection=collection)
    except InvalidCursorError:
        raise _refuse("Not a cursor of this collection", cursor) from None
    return PageRequest(collection, limit, None, after, keys)


PageParams = Annotated[PageRequest, Depends(page_request)]
