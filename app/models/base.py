"""Declarative base with a constraint naming convention and UTC-aware timestamps."""

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import DateTime, Dialect, ForeignKey, Index, MetaData, TypeDecorator, Uuid
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utc_now() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use timezone-aware UTC values")
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, uuid.UUID: Uuid}


class UUIDPrimaryKey:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4, sort_order=-10)


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=utc_now, sort_order=10)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now, sort_order=10)


class Versioned:
    """A counter raised by every change of the row: what a strong ETag is made of."""

    version: Mapped[int] = mapped_column(default=1, server_default="1", sort_order=10)


class Record(UUIDPrimaryKey, Timestamps):
    """A row with an id and timestamps, which newest-first pages order by (repositories/pages)."""


class OwnedResource(Record, Versioned):
    """The columns of a resource that belongs to a user (see `repositories/owned.py`), and the
    indexes its pages need."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:
        table = cls.__tablename__  # type: ignore[attr-defined]
        return (
            # An owner's newest-first page (and its count) is an index range scan.
            Index(f"ix_{table}_owner_id_created_at", "owner_id", "created_at", "id"),
            # A superuser's page of everybody's rows.
            Index(f"ix_{table}_created_at", "created_at", "id"),
        )

    @declared_attr
    def owner_id(cls) -> Mapped[uuid.UUID]:
        return mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
