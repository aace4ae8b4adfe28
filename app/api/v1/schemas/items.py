import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from app.api.v1.schemas.common import PatchModel, SafeStr, StrictModel

Title = Annotated[SafeStr, Field(min_length=1, max_length=255)]
Description = Annotated[SafeStr, Field(max_length=10_000)]


class ItemCreate(StrictModel):
    title: Title
    description: Description | None = None


class ItemUpdate(PatchModel):
    """Partial update: only the fields sent change; `null` clears the description."""

    not_nullable = ("title",)

    title: Title | SkipJsonSchema[None] = None
    description: Description | None = None


class ItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str
    description: str | None
    owner_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
