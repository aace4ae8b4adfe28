"""Items: owner-scoped CRUD (a superuser sees every item)."""

import uuid

from fastapi import APIRouter, Response, status

from app.api.v1.resources import (
    UNAUTHENTICATED,
    CreateOnceDep,
    IfMatchDep,
    IfNoneMatchDep,
    PageParams,
    owned_responses,
)
from app.api.v1.schemas.common import Page
from app.api.v1.schemas.items import ItemCreate, ItemPublic, ItemUpdate
from app.dependencies import ReaderDep, WriterDep
from app.models import Item
from app.services import owned_resources as owned

router = APIRouter(prefix="/items", tags=["items"], responses=UNAUTHENTICATED)
responses = owned_responses("item")


@router.get("", response_model=Page[ItemPublic])
async def list_items(reader: ReaderDep, page: PageParams) -> dict[str, object]:
    """The caller's items, newest first (a superuser's page holds everybody's)."""
    rows = await owned.page(
        reader.connection,
        Item,
        user=reader.user,
        limit=page.limit,
        offset=page.offset,
        after=page.after,
    )
    return page.answer(rows)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ItemPublic,
    responses=responses.create,
)
async def create_item(body: ItemCreate, writer: WriterDep, once: CreateOnceDep) -> Response:
    return await once(
        writer,
        body,
        lambda: owned.create(writer.session, Item, user=writer.user, **body.model_dump()),
    )


@router.get("/{item_id}", response_model=ItemPublic, responses=responses.read)
async def read_item(item_id: uuid.UUID, reader: ReaderDep, fresh: IfNoneMatchDep) -> object:
    return fresh.answer(await owned.get(reader.session, Item, item_id, user=reader.user))


@router.patch("/{item_id}", response_model=ItemPublic, responses=responses.change)
async def update_item(
    item_id: uuid.UUID, body: ItemUpdate, writer: WriterDep, precondition: IfMatchDep
) -> object:
    changes = body.model_dump(exclude_unset=True)
    item = await owned.update(
        writer.session,
        Item,
        item_id,
        user=writer.user,
        changes=changes,
        versions=precondition.versions,
    )
    return precondition.answer(item)


@router.delete("/{item_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses.delete)
async def delete_item(item_id: uuid.UUID, writer: WriterDep, precondition: IfMatchDep) -> None:
    await owned.delete(
        writer.session, Item, item_id, user=writer.user, versions=precondition.versions
    )
