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
