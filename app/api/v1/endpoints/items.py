"""Items: owner-scoped CRUD (a superuser sees every item)."""

import uuid

from fastapi import APIRouter, Request, Response, status

from app.api.v1.schemas.common import (
    LimitQuery,
    OffsetQuery,
    Page,
    created_links,
    error_responses,
)
from app.api.v1.schemas.items import ItemCreate, ItemPublic, ItemUpdate
from app.dependencies import CurrentUser, ReadingUser, ReadSessionDep, SessionDep
from app.services import item_service

router = APIRouter(
    prefix="/items",
    tags=["items"],
    responses=error_responses({401: "Not authenticated"}),
)
NOT_FOUND = error_responses({404: "Item not found"})


@router.get("", response_model=Page[ItemPublic])
async def list_items(
    user: ReadingUser, session: ReadSessionDep, limit: LimitQuery = 20, offset: OffsetQuery = 0
) -> dict[str, object]:
    """The caller's items, newest first (a superuser's page holds everybody's)."""
    items, total = await item_service.page(session, user=user, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemPublic,
    responses=created_links("item_id", "read_item", "update_item", "delete_item"),
)
async def create_item(
    body: ItemCreate, user: CurrentUser, session: SessionDep, request: Request, response: Response
) -> object:
    item = await item_service.create(
        session, user=user, title=body.title, description=body.description
    )
    response.headers["Location"] = request.app.url_path_for("read_item", item_id=str(item.id))
    return item


@router.get("/{item_id}", response_model=ItemPublic, responses=NOT_FOUND)
async def read_item(item_id: uuid.UUID, user: ReadingUser, session: ReadSessionDep) -> object:
    return await item_service.get(session, user=user, item_id=item_id)


@router.patch("/{item_id}", response_model=ItemPublic, responses=NOT_FOUND)
async def update_item(
    item_id: uuid.UUID, body: ItemUpdate, user: CurrentUser, session: SessionDep
) -> object:
    return await item_service.update(
        session, user=user, item_id=item_id, changes=body.model_dump(exclude_unset=True)
    )


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_item(item_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> None:
    await item_service.delete(session, user=user, item_id=item_id)
