"""Items: owner-scoped CRUD (a superuser sees every item)."""

import uuid

from fastapi import APIRouter, Request, Response, status

from app.api.v1 import conditional
from app.api.v1.conditional import (
    CONDITIONAL_CHANGE,
    CONDITIONAL_READ,
    PRECONDITION_FAILED,
    IfMatch,
    IfNoneMatch,
    etag,
    if_match_versions,
)
from app.api.v1.idempotency import IDEMPOTENCY_ERRORS, IdempotencyKey, create_once
from app.api.v1.pagination import CursorQuery, page_request
from app.api.v1.schemas.common import (
    LimitQuery,
    OffsetQuery,
    Page,
    created_links,
    error_responses,
)
from app.api.v1.schemas.items import ItemCreate, ItemPublic, ItemUpdate
from app.dependencies import (
    CurrentUser,
    ReadConnectionDep,
    ReadingUser,
    ReadSessionDep,
    SessionDep,
)
from app.models import Item
from app.services import item_service

router = APIRouter(
    prefix="/items",
    tags=["items"],
    responses=error_responses({401: "Not authenticated"}),
)
NOT_FOUND = error_responses({404: "Item not found"})


@router.get("", response_model=Page[ItemPublic])
async def list_items(
    user: ReadingUser,
    connection: ReadConnectionDep,
    request: Request,
    *,
    limit: LimitQuery = 20,
    offset: OffsetQuery = None,
    cursor: CursorQuery = None,
) -> dict[str, object]:
    """The caller's items, newest first (a superuser's page holds everybody's)."""
    page = page_request(request, "items", limit=limit, offset=offset, cursor=cursor)
    items = await item_service.page(
        connection, user=user, limit=limit, offset=page.offset, after=page.after
    )
    return page.answer(items)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemPublic,
    responses={
        **created_links("item_id", "read_item", "update_item", "delete_item"),
        **IDEMPOTENCY_ERRORS,
    },
)
async def create_item(
    body: ItemCreate,
    user: CurrentUser,
    session: SessionDep,
    request: Request,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def create() -> Item:
        return await item_service.create(
            session, user=user, title=body.title, description=body.description
        )

    return await create_once(
        session,
        request,
        user=user,
        key=idempotency_key,
        body=body,
        create=create,
        public=ItemPublic,
    )


@router.get("/{item_id}", response_model=ItemPublic, responses={**CONDITIONAL_READ, **NOT_FOUND})
async def read_item(
    item_id: uuid.UUID,
    user: ReadingUser,
    session: ReadSessionDep,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> object:
    item = await item_service.get(session, user=user, item_id=item_id)
    return conditional.read(item, response, if_none_match)


@router.patch(
    "/{item_id}", response_model=ItemPublic, responses={**CONDITIONAL_CHANGE, **NOT_FOUND}
)
async def update_item(
    item_id: uuid.UUID,
    body: ItemUpdate,
    user: CurrentUser,
    session: SessionDep,
    *,
    response: Response,
    if_match: IfMatch = None,
) -> object:
    changes = body.model_dump(exclude_unset=True)
    versions = if_match_versions(if_match)
    item = await item_service.update(
        session, user=user, item_id=item_id, changes=changes, versions=versions
    )
    response.headers["ETag"] = etag(item.version)
    return item


@router.delete(
    "/{item_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**NOT_FOUND, **PRECONDITION_FAILED},
)
async def delete_item(
    item_id: uuid.UUID, user: CurrentUser, session: SessionDep, if_match: IfMatch = None
) -> None:
    versions = if_match_versions(if_match)
    await item_service.delete(session, user=user, item_id=item_id, versions=versions)
