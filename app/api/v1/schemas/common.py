"""Shapes shared by every resource: the page of a collection, the error responses' OpenAPI."""

from typing import Annotated, Any, ClassVar, Generic, TypeVar

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app.core.exceptions import ErrorResponse  # the envelope lives with the errors it renders

MAX_LIMIT = 100
MAX_OFFSET = 100_000


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(ge=0)
    limit: int = Field(ge=1, le=MAX_LIMIT)
    offset: int | None = Field(ge=0, le=MAX_OFFSET, description="null on a page asked by cursor")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )


class StrictModel(BaseModel):
    """Request bodies: unknown fields are refused (422), never silently dropped or honoured."""

    model_config = ConfigDict(extra="forbid")


class PatchModel(StrictModel):
    """A partial update: fields may be left out, but those in `not_nullable` cannot be null."""

    not_nullable: ClassVar[tuple[str, ...]] = ()

    @field_validator("*")
    @classmethod
    def _refuse_null(cls, value: Any, info: ValidationInfo) -> Any:
        # Defaults are not validated, so this runs only for a null the client sent.
        if value is None and info.field_name in cls.not_nullable:
            raise PydanticCustomError("not_nullable", "Field cannot be null")
        return value


def _reject_unstorable(value: str) -> str:
    # PostgreSQL cannot store NUL, and a lone surrogate cannot be encoded as UTF-8 at all:
    # both would otherwise surface later as a 500.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    if any("\ud800" <= char <= "\udfff" for char in value):
        raise ValueError("must not contain unpaired surrogate characters")
    return value


SafeStr = Annotated[
    str,
    AfterValidator(_reject_unstorable),
    # Tell clients (and fuzzers) in the schema what the validator refuses; surrogates have no
    # portable JSON Schema spelling, so the description carries that part.
    Field(json_schema_extra={"pattern": "^[^\\u0000]*$"}),
]
"""Text that every backend stores and returns exactly as sent."""

LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size")]
OffsetQuery = Annotated[int | None, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")]


def error_responses(described: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for error statuses, each with the envelope as its body."""
    return {
        status: {"model": ErrorResponse, "description": text} for status, text in described.items()
    }


def created_links(parameter: str, *operations: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI links from a 201 answer to the operations that take the new resource's id."""
    links = {
        operation: {"operationId": operation, "parameters": {parameter: "$response.body#/id"}}
        for operation in operations
    }
    return {201: {"links": links}}
