import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column, validates

from app.models.base import Base, Record


class User(Record, Base):
    """An account. `email` is stored lower-cased, so its unique constraint is case-insensitive."""

    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    full_name: Mapped[str | None] = mapped_column(String(255))
    hashed_password: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_superuser: Mapped[bool] = mapped_column(default=False)
    email_verified: Mapped[bool] = mapped_column(default=False)

    @validates("email")
    def _lower_email(self, _key: str, email: str) -> str:
        return email.lower()


@dataclass(frozen=True, slots=True)
class UserView:
    """An account as it was read when the request was authenticated: what the caller may do,
    and what `/users/me` shows. Never written back: a write loads the row in its own
    transaction, or states what must still hold in its UPDATE (see `user_repository`)."""

    id: uuid.UUID
    email: str
    full_name: str | None
    is_active: bool
    is_superuser: bool
    email_verified: bool
    created_at: datetime
    updated_at: datetime
