import uuid

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamps, UUIDPrimaryKey


class Item(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "items"
    __table_args__ = (
        # An owner's newest-first page (and its count) is an index range scan.
        Index("ix_items_owner_id_created_at", "owner_id", "created_at", "id"),
        # The superuser's all-items page.
        Index("ix_items_created_at", "created_at", "id"),
    )

    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
