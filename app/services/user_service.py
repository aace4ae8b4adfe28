"""Accounts: registration, profile changes, passwords, administration."""

import uuid
from typing import Any, Literal

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from app.core.exceptions import ConflictError, ForbiddenError, NotFoundError
from app.core.security import hash_password, verify_password
from app.models import User
from app.repositories import account_token_repository, session_repository, user_repository
from app.repositories.pages import PageRows, Position

logger = structlog.get_logger("app.users")

PASSWORD_RESET_PURPOSE = "password_reset"  # noqa: S105 - a token kind, no secret


async def _ensure_email_free(
    session: AsyncSession, email: str, *, except_id: uuid.UUID | None = None
) -> None:
    if await user_repository.email_taken(session, email, except_id=except_id):
        raise ConflictError("A user with this email already exists")


async def create(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    full_name: str | None = None,
    is_active: bool = True,
    is_superuser: bool = False,
) -> User:
    await _ensure_email_free(session, email)
    return await user_repository.add(
        session,
        email=email,
        full_name=full_name,
        hashed_password=await hash_password(password),
        is_active=is_active,
        is_superuser=is_superuser,
    )


async def get(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await user_repository.get(session, user_id)
    if user is None:
        raise NotFoundError(f"User with id '{user_id}' not found")
    return user


async def page(
    connection: AsyncConnection, *, limit: int, offset: int | None, after: Position | None
) -> PageRows:
    return await user_repository.page(connection, limit=limit, offset=offset or 0, after=after)


async def update(session: AsyncSession, user: User, changes: dict[str, Any]) -> User:
    """Apply the fields a client sent; a new password or deactivation ends every session.

    A new email address is unverified; a new password kills outstanding reset links.
    """
    values = dict(changes)
    if "email" in values:
        await _ensure_email_free(session, values["email"], except_id=user.id)
        if values["email"].lower() != user.email:
            values["email_verified"] = False
    password = values.pop("password", None)
    if password is not None:
        values["hashed_password"] = await hash_password(password)
        await account_token_repository.invalidate(
            session, user_id=user.id, purpose=PASSWORD_RESET_PURPOSE
        )
    if password is not None or values.get("is_active") is False:
        await session_repository.revoke_all_for_user(session, user_id=user.id)
    return await user_repository.update(session, user, **values)


async def change_password(
    session: AsyncSession, user: User, *, current_password: str, new_password: str
) -> None:
    """Check the current password, store the new one and end every session of the user."""
    matches, _ = await verify_password(current_password, user.hashed_password)
    if not matches:
        raise ForbiddenError("Current password is incorrect")
    await update(session, user, {"password": new_password})


async def delete(session: AsyncSession, user: User) -> None:
    """Remove the account; its items and sessions go with it (ON DELETE CASCADE)."""
    await user_repository.delete(session, user)


async def ensure_superuser(
    sessionmaker: async_sessionmaker[AsyncSession], *, email: str, password: str
) -> Literal["created", "exists", "taken"]:
    """Create the configured superuser unless that email exists; safe when workers race.

    An existing account with that email is left as it is: promoting it would hand superuser
    rights to whoever registered the address first.
    """
    async with sessionmaker() as session:
        existing = await user_repository.get_by_email(session, email)
        if existing is not None:
            if existing.is_superuser:
                return "exists"
            logger.warning("first_superuser_email_taken_by_regular_user", email=email)
            return "taken"
        try:
            await create(session, email=email, password=password, is_superuser=True)
            await session.commit()
        except (ConflictError, IntegrityError):  # another worker created it first
            await session.rollback()
            return "exists"
        logger.info("first_superuser_created", email=email)
        return "created"
