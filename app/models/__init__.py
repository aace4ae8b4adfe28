"""Every table, imported here so `Base.metadata` is complete for Alembic."""

from app.models.account_token import AccountToken
from app.models.base import Base
from app.models.idempotency import IdempotencyRecord
from app.models.item import Item
from app.models.outbox import OutboxJob
from app.models.session import AuthSession
from app.models.user import User, UserView

__all__ = [
    "AccountToken",
    "AuthSession",
    "Base",
    "IdempotencyRecord",
    "Item",
    "OutboxJob",
    "User",
    "UserView",
]
