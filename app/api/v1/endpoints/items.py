"""Items: owner-scoped CRUD (a superuser sees every item)."""

import uuid

from fastapi import APIRouter, Request, Response, status

from app.api.v1.conditional import (
    ETAG_HEADER,
    NOT_MODIFIED,
    PRECONDITION_FAILED,
    IfMatch,
    IfNoneMatch,
    etag,
    if_match_versions,
    not_modified,
)
from app.api.v1.idempotency import IDEMPOTENCY_ERRORS, IdempotencyKey, create_once, created
from app.api.v1.pagination import CursorQuery, page_request
from app.api.v1.schemas.common import (
    LimitQuery,
    OffsetQuery,
    Page,
    created_links,
    error_responses,
)
from app.api.v1.schemas.items import ItemCreate, ItemPublic, ItemUpdate
from app.dependencies import CurrentUser, ReadSessionDep, SessionDep
from app.services import item_service

router = APIRouter(
    prefix="/items",
    tags=["items"],
    responses=error_responses({401: "Not authenticated"}),
)
NOT_FOUND = error_responses({404: "Item not found"})


@router.get("", response_model=Page[ItemPublic])
async def list_items(
    user: CurrentUser,
    session: ReadSessionDep,
    request: Request,
    *,
    limit: LimitQuery = 20,
    offset: OffsetQuery = None,
    cursor: CursorQuery = None,
) -> dict[str, object]:
    """The caller's items, newest first (a superuser's page holds everybody's)."""
    page = page_request(request, "items", limit=limit, offset=offset, cursor=cursor)
    items = await item_service.page(
        session, user=user, limit=limit, offset=page.offset, after=page.after
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
    async def create() -> Response:
        item = await item_service.create(
            session, user=user, title=body.title, description=body.description
        )
        location = request.app.url_path_for("read_item", item_id=str(item.id))
        return created(ItemPublic.model_validate(item), location=location, etag=etag(item.version))

    return await create_once(
        session, request, user_id=user.id, key=idempotency_key, body=body, create=create
    )


@router.get(
    "/{item_id}",
    response_model=ItemPublic,
    responses={200: {"headers": ETAG_HEADER}, **NOT_MODIFIED, **NOT_FOUND},
)
async def read_item(
    item_id: uuid.UUID,
    user: CurrentUser,
    session: ReadSessionDep,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> object:
    item = await item_service.get(session, user=user, item_id=item_id)
    unchanged = not_modified(if_none_match, item.version)
    if unchanged is not None:
        return unchanged
    response.headers["ETag"] = etag(item.version)
    return item


@router.patch(
    "/{item_id}",
    response_model=ItemPublic,
    responses={200: {"headers": ETAG_HEADER}, **NOT_FOUND, **PRECONDITION_FAILED},
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
    item = await item_service.update(
        session,
        user=user,
        item_id=item_id,
        changes=body.model_dump(exclude_unset=True),
        versions=if_match_versions(if_match),
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
    await item_service.delete(
        session, user=user, item_id=item_id, versions=if_match_versions(if_match)
    )
