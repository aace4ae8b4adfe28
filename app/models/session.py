import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UUIDPrimaryKey, utc_now


class AuthSession(UUIDPrimaryKey, Base):
    """One login: access tokens name it (`sid`); `refresh_jti` is its only usable refresh token."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_id", "user_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    refresh_jti: Mapped[uuid.UUID]
    # The refresh token id spent by the last rotation, and when: presented again within
    # REFRESH_REUSE_GRACE_SECONDS (a retried request, a second tab) it is not a replay.
    previous_refresh_jti: Mapped[uuid.UUID | None]
    rotated_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
