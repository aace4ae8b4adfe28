"""Delivering an email: SMTP with aiosmtplib, or (development without SMTP_HOST) the log."""

from email.message import EmailMessage
from typing import Protocol

import aiosmtplib
import structlog
from opentelemetry.trace import SpanKind, Tracer

from app.config import Settings

logger = structlog.get_logger("app.emails")


class EmailSender(Protocol):
    async def send(self, message: EmailMessage) -> None:
        """Deliver the message or raise; a raise means the job is tried again later."""


class SmtpSender:
    def __init__(self, settings: Settings, tracer: Tracer | None = None) -> None:
        self.settings = settings
        self.tracer = tracer  # None: tracing is off

    async def send(self, message: EmailMessage) -> None:
        if self.tracer is None:
            await self._send(message)
            return
        # aiosmtplib has no instrumentation: the send as a client span of the job's.
        attributes: dict[str, str | int] = {
            "network.protocol.name": "smtp",
            "server.address": self.settings.SMTP_HOST or "",
            "server.port": self.settings.SMTP_PORT,
        }
        with self.tracer.start_as_current_span(
            "smtp send", kind=SpanKind.CLIENT, attributes=attributes
        ):
            await self._send(message)

    async def _send(self, message: EmailMessage) -> None:
        settings = self.settings
        password = settings.SMTP_PASSWORD.get_secret_value() if settings.SMTP_PASSWORD else None
        await aiosmtplib.send(
            message,
            hostname=settings.SMTP_HOST,
            port=settings.SMTP_PORT,
            username=settings.SMTP_USERNAME,
            password=password,
            use_tls=settings.SMTP_SECURITY == "tls",
            # True insists on STARTTLS (fails if the server does not offer it); False never uses it.
            start_tls=settings.SMTP_SECURITY == "starttls",
            timeout=settings.SMTP_TIMEOUT_SECONDS,
        )
        logger.info("email_sent", to=message["To"], subject=message["Subject"])


class LogSender:
    """Development only (production requires SMTP_HOST): the email, link included, in the log."""

    async def send(self, message: EmailMessage) -> None:
        text = message.get_body(preferencelist=("plain",))
        logger.info(
            "email_logged",
            to=message["To"],
            subject=message["Subject"],
            text=text.get_content() if isinstance(text, EmailMessage) else None,
        )


def build_sender(settings: Settings, tracer: Tracer | None = None) -> EmailSender:
    return SmtpSender(settings, tracer) if settings.SMTP_HOST else LogSender()
