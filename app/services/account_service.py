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
from typing import Any, Final, Protocol
from urllib.parse import urlencode

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.core.exceptions import BadRequestError
from app.core.security import hash_password
from app.emails import messages
from app.emails.sender import EmailSender
from app.models import User, UserView
from app.models.base import utc_now
from app.repositories import (
    account_token_repository,
    outbox_repository,
    session_repository,
    user_repository,
)
from app.services import user_service

logger = structlog.get_logger("app.accounts")

VERIFY: Final = user_service.VERIFY_EMAIL_PURPOSE
RESET: Final = user_service.PASSWORD_RESET_PURPOSE
SEND_VERIFICATION: Final = "send_verification_email"
SEND_PASSWORD_RESET: Final = "send_password_reset_email"  # noqa: S105 - a job name
SEND_EMAIL_CHANGED: Final = "send_email_changed_notice"
INVALID_TOKEN: Final = "Invalid or expired token"  # noqa: S105 - a message


class EmailBudget(Protocol):
    """What an email-sending request may still send (`app.core.rate_limit.EmailQuota`)."""

    async def spend(self, address: str) -> None: ...


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def record_verification(session: AsyncSession, settings: Settings, user: User | UserView) -> None:
    outbox_repository.record(
        session,
        SEND_VERIFICATION,
        {"user_id": str(user.id), "email": user.email},
        due_in=settings.job_redeliver_seconds,
    )


async def register(
    session: AsyncSession,
    settings: Settings,
    quota: EmailBudget,
    *,
    email: str,
    password: str,
    full_name: str | None,
) -> User:
    await quota.spend(email)
    user = await user_service.create(session, email=email, password=password, full_name=full_name)
    record_verification(session, settings, user)
    return user


async def update_profile(
    session: AsyncSession,
    settings: Settings,
    user_id: uuid.UUID,
    changes: dict[str, Any],
    *,
    quota: EmailBudget | None = None,
    current_password: str | None = None,
) -> User:
    """`user_service.update`; a new address gets a verification link and the previous one a
    notice (always sent: a security alarm, outside the quota, which only counts the link)."""
    if quota is not None and "email" in changes:
        await quota.spend(changes["email"])
    user, previous = await user_service.update(
        session, user_id, changes, current_password=current_password
    )
    if user.email != previous:
        record_verification(session, settings, user)
        outbox_repository.record(
            session,
            SEND_EMAIL_CHANGED,
            {"user_id": str(user.id), "previous": previous, "new": user.email},
            due_in=settings.job_redeliver_seconds,
        )
        logger.info("email_changed", user_id=str(user.id))
    return user


async def resend_verification(
    session: AsyncSession, settings: Settings, quota: EmailBudget, user: UserView
) -> None:
    if not user.email_verified:
        await quota.spend(user.email)
        record_verification(session, settings, user)


async def request_password_reset(
    session: AsyncSession, settings: Settings, quota: EmailBudget, *, email: str
) -> None:
    """The same work whether or not the account exists: the job looks the address up."""
    await quota.spend(email)
    outbox_repository.record(
        session, SEND_PASSWORD_RESET, {"email": email}, due_in=settings.job_redeliver_seconds
    )


async def _spend(session: AsyncSession, token: str, purpose: str, **values: Any) -> User:
    """Spend a usable token and set `values` on its account, only while the account is active
    and still has the address the token was sent to; 400 for anything else.

    The account's row is changed (and so locked) before the token: the lock order of every
    account write (`user_service`).
    """
    usable = await account_token_repository.find(session, token_hash=digest(token), purpose=purpose)
    if usable is None:
        raise BadRequestError(INVALID_TOKEN)
    user = await user_repository.update(
        session, usable.user_id, User.email == usable.email, User.is_active.is_(True), **values
    )
    spent = await account_token_repository.consume(
        session, token_hash=digest(token), purpose=purpose
    )
    if user is None or not spent:  # the address changed, or another request spent it first
        raise BadRequestError(INVALID_TOKEN)
    return user


async def verify_email(session: AsyncSession, *, token: str) -> User:
    return await _spend(session, token, VERIFY, email_verified=True)


async def reset_password(session: AsyncSession, *, token: str, new_password: str) -> None:
    """New password, every session ended, every other reset link dead; the address is proven."""
    hashed = await hash_password(new_password)  # in a thread, before any lock is taken
    user = await _spend(session, token, RESET, hashed_password=hashed, email_verified=True)
    await account_token_repository.invalidate(session, user_id=user.id, purposes=[RESET])
    await session_repository.revoke_all_for_user(session, user_id=user.id)
    logger.info("password_reset", user_id=str(user.id))


def _job_token(settings: Settings, job_id: uuid.UUID, purpose: str) -> str:
    """The link token of one email job: an HMAC of its id under the key derived from SECRET_KEY
    for this use alone, so a rerun of the job sends the same link (256 bits, unguessable
    without the key). Rotating SECRET_KEY between two runs makes the second a new link."""
    key = settings.keys.current.account_token
    mac = hmac.new(key, f"{purpose}:{job_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


async def _store_token(
    session: AsyncSession, *, user: User, purpose: str, lifetime: timedelta, token: str
) -> None:
    """Store the job's token; earlier ones of the same purpose stop working. A rerun of the job
    finds its token stored and changes nothing, so the link it sent first keeps working."""
    if await account_token_repository.exists(session, token_hash=digest(token)):
        return
    await account_token_repository.invalidate(session, user_id=user.id, purposes=[purpose])
    await account_token_repository.add(
        session,
        user_id=user.id,
        purpose=purpose,
        token_hash=digest(token),
        email=user.email,
        expires_at=utc_now() + lifetime,
    )


PAGES: Final = {VERIFY: "verify-email", RESET: "reset-password"}  # the front end's pages


async def _issue_link(
    session: AsyncSession,
    settings: Settings,
    *,
    job_id: uuid.UUID,
    user: User,
    purpose: str,
    lifetime: timedelta,
) -> str:
    """The job's link for the user, stored and committed: it must work when the email arrives."""
    token = _job_token(settings, job_id, purpose)
    await _store_token(session, user=user, purpose=purpose, lifetime=lifetime, token=token)
    await session.commit()
    return _link(settings, PAGES[purpose], token)


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
    link = await _issue_link(
        session, settings, job_id=job_id, user=user, purpose=VERIFY, lifetime=timedelta(hours=hours)
    )
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
    lifetime = timedelta(minutes=minutes)
    link = await _issue_link(
        session, settings, job_id=job_id, user=user, purpose=RESET, lifetime=lifetime
    )
    await sender.send(
        messages.password_reset(
            sender=settings.email_from,
            to=user.email,
            project=settings.PROJECT_NAME,
            link=link,
            minutes=minutes,
        )
    )


async def send_email_changed_notice(
    settings: Settings, sender: EmailSender, *, previous: str, new: str
) -> None:
    """Job: tell the previous address that the account's address changed (no link in it)."""
    await sender.send(
        messages.email_changed(
            sender=settings.email_from, to=previous, project=settings.PROJECT_NAME, new=new
        )
    )
