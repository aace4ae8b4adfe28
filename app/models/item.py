from sqlalchemy import Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, OwnedResource


class Item(OwnedResource, Base):
    __tablename__ = "items"
    __table_args__ = (
        # An owner's newest-first page (and its count) is an index range scan.
        Index("ix_items_owner_id_created_at", "owner_id", "created_at", "id"),
        # The superuser's all-items page.
        Index("ix_items_created_at", "created_at", "id"),
    )

    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
