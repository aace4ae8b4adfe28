"""Accounts: registration, profile changes, passwords, administration.

A change loads the account in its own transaction, locked (`user_repository.lock`), before it
decides anything; the account the request was authenticated as (a `UserView`) only says who
asks. Lock order: the user's row first, then its tokens and sessions.
"""

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
VERIFY_EMAIL_PURPOSE = "verify_email"
WRONG_PASSWORD = "Current password is incorrect"  # noqa: S105 - a message


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


def _not_found(user_id: uuid.UUID) -> NotFoundError:
    return NotFoundError(f"User with id '{user_id}' not found")


async def get(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await user_repository.get(session, user_id)
    if user is None:
        raise _not_found(user_id)
    return user


async def lock(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The account's current row, held by this transaction until it ends; 404 if gone."""
    user = await user_repository.lock(session, user_id)
    if user is None:
        raise _not_found(user_id)
    return user


async def check_password(user: User, password: str) -> None:
    """403 unless `password` is the account's current one (`user` as locked by `lock`)."""
    matches, _ = await verify_password(password, user.hashed_password)
    if not matches:
        raise ForbiddenError(WRONG_PASSWORD)


async def page(
    connection: AsyncConnection, *, limit: int, offset: int | None, after: Position | None
) -> PageRows:
    return await user_repository.page(connection, limit=limit, offset=offset or 0, after=after)


async def update(
    session: AsyncSession,
    user_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    current_password: str | None = None,
) -> tuple[User, str]:
    """Apply the fields a client sent; the account as changed, and its previous address.

    With `current_password`, nothing changes unless it is the account's password. A new
    address is unverified and ends every emailed link of the account; a new password ends the
    reset links; a new password or a deactivation ends every session.
    """
    values = dict(changes)
    password = values.pop("password", None)
    if password is not None:  # hashed before the row is locked: the lock is held briefly
        values["hashed_password"] = await hash_password(password)
    user = await lock(session, user_id)
    if current_password is not None:
        await check_password(user, current_password)
    previous_email = user.email
    if values.get("email", previous_email) == previous_email:
        values.pop("email", None)
    else:
        await _ensure_email_free(session, values["email"], except_id=user_id)
        values["email_verified"] = False
    updated = await user_repository.update(session, user_id, **values)
    if updated is None:  # only when the row vanished, which its lock prevents on PostgreSQL
        raise _not_found(user_id)
    ended_links = []
    if "email" in values:
        ended_links += [PASSWORD_RESET_PURPOSE, VERIFY_EMAIL_PURPOSE]
    elif password is not None:
        ended_links.append(PASSWORD_RESET_PURPOSE)
    if ended_links:
        await account_token_repository.invalidate(session, user_id=user_id, purposes=ended_links)
    if password is not None or values.get("is_active") is False:
        await session_repository.revoke_all_for_user(session, user_id=user_id)
    return updated, previous_email


async def change_password(
    session: AsyncSession, user_id: uuid.UUID, *, current_password: str, new_password: str
) -> None:
    """Check the current password, store the new one and end every session of the user."""
    await update(session, user_id, {"password": new_password}, current_password=current_password)


async def delete(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Remove the account; its items and sessions go with it (ON DELETE CASCADE)."""
    if not await user_repository.delete(session, user_id):
        raise _not_found(user_id)


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
