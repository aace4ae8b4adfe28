"""Logins, token rotation and revocation.

A login creates a session row; the access token names it (`sid`) and the one usable refresh
token is the session's `refresh_jti`. Revoking the row ends every token of that login at once,
on every worker, because each authenticated request loads the user through it.
"""

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.config import Settings
from app.core.exceptions import UnauthorizedError
from app.core.security import (
    InvalidTokenError,
    TokenClaims,
    create_token,
    decode_token,
    verify_password,
)
from app.models import User, UserView
from app.repositories import session_repository, user_repository

logger = structlog.get_logger("app.auth")

BAD_CREDENTIALS = "Incorrect email or password"


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int


def _issue(
    settings: Settings, *, user_id: uuid.UUID, session_id: uuid.UUID, refresh_jti: uuid.UUID
) -> IssuedTokens:
    access_lifetime = timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    access, _ = create_token(
        settings,
        token_type="access",  # noqa: S106
        user_id=user_id,
        session_id=session_id,
        jti=uuid.uuid4(),
        lifetime=access_lifetime,
    )
    refresh, _ = create_token(
        settings,
        token_type="refresh",  # noqa: S106
        user_id=user_id,
        session_id=session_id,
        jti=refresh_jti,
        lifetime=timedelta(days=settings.REFRESH_TOKEN_EXPIRE_DAYS),
    )
    return IssuedTokens(access, refresh, int(access_lifetime.total_seconds()))


async def login(
    session: AsyncSession, settings: Settings, *, email: str, password: str
) -> IssuedTokens:
    """Same refusal, and about the same time, for an unknown email and a wrong password."""
    user = await user_repository.get_by_email(session, email)
    matches, new_hash = await verify_password(password, user.hashed_password if user else None)
    if user is None or not matches or not user.is_active:
        raise UnauthorizedError(BAD_CREDENTIALS)
    if new_hash is not None:  # stored with outdated Argon2 parameters: upgrade it now, unless
        # the password changed while this one was checked (it would come back to life)
        await user_repository.update(
            session, user.id, User.hashed_password == user.hashed_password, hashed_password=new_hash
        )
    refresh_jti = uuid.uuid4()
    login_session = await session_repository.add(
        session,
        user_id=user.id,
        refresh_jti=refresh_jti,
        expires_at=datetime.now(UTC) + timedelta(days=settings.REFRESH_TOKEN_EXPIRE_DAYS),
    )
    logger.info("login", user_id=str(user.id))
    return _issue(settings, user_id=user.id, session_id=login_session.id, refresh_jti=refresh_jti)


async def refresh(session: AsyncSession, settings: Settings, *, refresh_token: str) -> IssuedTokens:
    """Rotate: the presented refresh token is spent; a replayed one ends its whole session,
    unless it comes back within REFRESH_REUSE_GRACE_SECONDS of its first use."""
    try:
        claims = decode_token(settings, refresh_token, "refresh")
    except InvalidTokenError:
        raise UnauthorizedError("Invalid refresh token") from None
    new_jti = uuid.uuid4()
    rotated = await session_repository.rotate_refresh(
        session,
        session_id=claims.session_id,
        user_id=claims.user_id,
        old_jti=claims.jti,
        new_jti=new_jti,
    )
    if not rotated and settings.REFRESH_REUSE_GRACE_SECONDS:
        # The same token again moments after its first use (a retried request, a second tab):
        # a pair carrying the family's current refresh token, which keeps working for both.
        current = await session_repository.current_jti_if_just_rotated(
            session,
            session_id=claims.session_id,
            user_id=claims.user_id,
            old_jti=claims.jti,
            grace=timedelta(seconds=settings.REFRESH_REUSE_GRACE_SECONDS),
        )
        if current is not None:
            rotated, new_jti = True, current
            logger.info("refresh_token_reused_within_grace", session_id=str(claims.session_id))
    user = await session_repository.active_user(
        await session.connection(), user_id=claims.user_id, session_id=claims.session_id
    )
    if not rotated or user is None:
        # A validly signed token that is not the current one was stolen or replayed:
        # end the family, and keep that even though this request fails.
        await session_repository.revoke(session, session_id=claims.session_id)
        await session.commit()
        logger.warning("refresh_token_reuse", session_id=str(claims.session_id))
        raise UnauthorizedError("Invalid refresh token")
    return _issue(settings, user_id=user.id, session_id=claims.session_id, refresh_jti=new_jti)


async def authenticate(connection: AsyncConnection, claims: TokenClaims) -> UserView:
    """The active user behind a verified access token's live login session, in one query."""
    user = await session_repository.active_user(
        connection, user_id=claims.user_id, session_id=claims.session_id
    )
    if user is None:
        raise UnauthorizedError()
    return user


async def logout(session: AsyncSession, *, session_id: uuid.UUID) -> None:
    await session_repository.revoke(session, session_id=session_id)
