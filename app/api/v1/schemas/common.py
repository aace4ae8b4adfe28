"""Shapes shared by every resource: the error envelope and the page of a collection."""

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

MAX_LIMIT = 100
MAX_OFFSET = 100_000


class FieldError(BaseModel):
    field: str = Field(examples=["body.title"])
    message: str = Field(examples=["String should have at most 255 characters"])
    type: str = Field(examples=["string_too_long"])


class ErrorResponse(BaseModel):
    """The one envelope of every non-2xx answer."""

    error: str = Field(examples=["not_found"])
    message: str = Field(examples=["Resource not found"])
    details: list[FieldError] | dict[str, Any] | None = None
    request_id: str | None = Field(examples=["7f9c2b7e-5d0a-4a43-9d52-8f0a7c1e2b3d"])


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=1, le=MAX_LIMIT)
    offset: int = Field(ge=0, le=MAX_OFFSET)


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused (422), never silently dropped or honoured."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)
