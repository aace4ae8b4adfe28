"""Job names and the functions that run them; a forker's new job is one entry here.

A handler gets the job's id: what it derives from it (the email jobs' link tokens) comes out the
same when the job runs again, so running twice is safe.
"""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.emails.sender import EmailSender
from app.services import account_service

Handler = Callable[
    [AsyncSession, Settings, EmailSender, uuid.UUID, dict[str, Any]], Awaitable[None]
]


async def _send_verification(
    session: AsyncSession,
    settings: Settings,
    sender: EmailSender,
    job_id: uuid.UUID,
    payload: dict[str, Any],
) -> None:
    await account_service.send_verification_email(
        session, settings, sender, job_id=job_id, user_id=payload["user_id"], email=payload["email"]
    )


async def _send_password_reset(
    session: AsyncSession,
    settings: Settings,
    sender: EmailSender,
    job_id: uuid.UUID,
    payload: dict[str, Any],
) -> None:
    await account_service.send_password_reset_email(
        session, settings, sender, job_id=job_id, email=payload["email"]
    )


async def _send_email_changed(
    _session: AsyncSession,
    settings: Settings,
    sender: EmailSender,
    _job_id: uuid.UUID,
    payload: dict[str, Any],
) -> None:
    await account_service.send_email_changed_notice(
        settings, sender, previous=payload["previous"], new=payload["new"]
    )


HANDLERS: dict[str, Handler] = {
    account_service.SEND_VERIFICATION: _send_verification,
    account_service.SEND_PASSWORD_RESET: _send_password_reset,
    account_service.SEND_EMAIL_CHANGED: _send_email_changed,
}
