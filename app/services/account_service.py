"""Accounts by email: verification and password reset (CONTRACT.md section 8).

Requests only record jobs (in their own transaction); the jobs, run by `app.jobs`, create the
tokens and send the emails. A token exists in clear only in the email: the database keeps its
SHA-256 digest, so a leaked table opens no account.
"""

import base64
import hashlib
import hmac
import uuid
from datetime import timedelta
from typing import Final
from urllib.parse import urlencode

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.exceptions import BadRequestError
from app.core.security import hash_password
from app.emails import messages
from app.emails.sender import EmailSender
from app.models import User
from app.models.base import utc_now
from app.repositories import (
    account_token_repository,
    outbox_repository,
    session_repository,
    user_repository,
)
from app.services import user_service

logger = structlog.get_logger("app.accounts")

VERIFY: Final = "verify_email"
RESET: Final = user_service.PASSWORD_RESET_PURPOSE
SEND_VERIFICATION: Final = "send_verification_email"
SEND_PASSWORD_RESET: Final = "send_password_reset_email"  # noqa: S105 - a job name
INVALID_TOKEN: Final = "Invalid or expired token"  # noqa: S105 - a message


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def record_verification(session: AsyncSession, settings: Settings, user: User) -> None:
    outbox_repository.record(
        session,
        SEND_VERIFICATION,
        {"user_id": str(user.id), "email": user.email},
        due_in=settings.job_redeliver_seconds,
    )


async def register(
    session: AsyncSession, settings: Settings, *, email: str, password: str, full_name: str | None
) -> User:
    user = await user_service.create(session, email=email, password=password, full_name=full_name)
    record_verification(session, settings, user)
    return user


async def update_profile(
    session: AsyncSession, settings: Settings, user: User, changes: dict[str, object]
) -> User:
    """`user_service.update`, plus a verification email when the address changed."""
    old_email = user.email
    user = await user_service.update(session, user, dict(changes))
    if user.email != old_email:
        record_verification(session, settings, user)
    return user


def resend_verification(session: AsyncSession, settings: Settings, user: User) -> None:
    if not user.email_verified:
        record_verification(session, settings, user)


def request_password_reset(session: AsyncSession, settings: Settings, *, email: str) -> None:
    """The same work whether or not the account exists: the job looks the address up."""
    outbox_repository.record(
        session, SEND_PASSWORD_RESET, {"email": email}, due_in=settings.job_redeliver_seconds
    )


async def _consume(session: AsyncSession, token: str, purpose: str) -> tuple[User, str]:
    """The user and address of a usable token, spent now; 400 for anything else."""
    spent = await account_token_repository.consume(
        session, token_hash=digest(token), purpose=purpose
    )
    user = await user_repository.get(session, spent[0]) if spent else None
    if spent is None or user is None or not user.is_active:
        raise BadRequestError(INVALID_TOKEN)
    return user, spent[1]


async def verify_email(session: AsyncSession, *, token: str) -> User:
    user, email = await _consume(session, token, VERIFY)
    if email != user.email:  # the address changed after this link was sent
        raise BadRequestError(INVALID_TOKEN)
    return await user_repository.update(session, user, email_verified=True)


async def reset_password(session: AsyncSession, *, token: str, new_password: str) -> None:
    """New password, every session ended, every other reset link dead; the address is proven."""
    # Hashed first (in a thread): the token's UPDATE then holds its lock only for a moment.
    hashed = await hash_password(new_password)
    user, email = await _consume(session, token, RESET)
    await account_token_repository.invalidate(session, user_id=user.id, purpose=RESET)
    await session_repository.revoke_all_for_user(session, user_id=user.id)
    verified = user.email_verified or email == user.email
    await user_repository.update(session, user, hashed_password=hashed, email_verified=verified)
    logger.info("password_reset", user_id=str(user.id))


def _job_token(settings: Settings, job_id: uuid.UUID, purpose: str) -> str:
    """The link token of one email job: an HMAC of its id under a key derived from SECRET_KEY
    for this use alone, so a rerun of the job sends the same link (256 bits, unguessable
    without the key). Rotating SECRET_KEY between two runs makes the second a new link."""
    key = hmac.new(settings.secret_key.encode(), b"keel/account-token", hashlib.sha256).digest()
    mac = hmac.new(key, f"{purpose}:{job_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


async def _new_token(
    session: AsyncSession, *, user: User, purpose: str, lifetime: timedelta, token: str
) -> str:
    """Store the job's token; earlier ones of the same purpose stop working. A rerun of the job
    finds its token stored and changes nothing, so the link it sent first keeps working."""
    if await account_token_repository.exists(session, token_hash=digest(token)):
        return token
    await account_token_repository.invalidate(session, user_id=user.id, purpose=purpose)
    await account_token_repository.add(
        session,
        user_id=user.id,
        purpose=purpose,
        token_hash=digest(token),
        email=user.email,
        expires_at=utc_now() + lifetime,
    )
    return token


def _link(settings: Settings, page: str, token: str) -> str:
    return f"{settings.frontend_url}/{page}?{urlencode({'token': token})}"


async def send_verification_email(
    session: AsyncSession,
    settings: Settings,
    sender: EmailSender,
    *,
    job_id: uuid.UUID,
    user_id: str,
    email: str,
) -> None:
    """Job: email a verification link, unless the address changed or is verified already."""
    user = await user_repository.get(session, uuid.UUID(user_id))
    if user is None or user.email != email or user.email_verified or not user.is_active:
        logger.info("verification_email_not_needed", user_id=user_id)
        return
    hours = settings.EMAIL_VERIFY_TOKEN_HOURS
    token = await _new_token(
        session,
        user=user,
        purpose=VERIFY,
        lifetime=timedelta(hours=hours),
        token=_job_token(settings, job_id, VERIFY),
    )
    await session.commit()  # the link must work by the time the email arrives
    link = _link(settings, "verify-email", token)
    await sender.send(
        messages.verification(
            sender=settings.email_from,
            to=email,
            project=settings.PROJECT_NAME,
            link=link,
            hours=hours,
        )
    )


async def send_password_reset_email(
    session: AsyncSession, settings: Settings, sender: EmailSender, *, job_id: uuid.UUID, email: str
) -> None:
    """Job: email a reset link to an existing active account; nothing for any other address."""
    user = await user_repository.get_by_email(session, email)
    if user is None or not user.is_active:
        logger.info("password_reset_email_not_sent", reason="no active account")
        return
    minutes = settings.PASSWORD_RESET_TOKEN_MINUTES
    token = await _new_token(
        session,
        user=user,
        purpose=RESET,
        lifetime=timedelta(minutes=minutes),
        token=_job_token(settings, job_id, RESET),
    )
    await session.commit()
    link = _link(settings, "reset-password", token)
    await sender.send(
        messages.password_reset(
            sender=settings.email_from,
            to=user.email,
            project=settings.PROJECT_NAME,
            link=link,
            minutes=minutes,
        )
    )
