"""A real SMTP server for tests (aiosmtpd on a free port) that keeps what it receives.

It can be told to refuse (`refuse_with = 451` or `550`) or to stall at the end of a message
(`stall = True`: no answer until released, then a refusal), to put senders and workers through
trouble.
"""

import asyncio
import logging
import re
import threading
import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests import servers

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every connection
PORTS = range(18600, 18700)  # the ports the jobs tests' SMTP servers, workers and APIs may use
LINK = re.compile(r"https?://\S+\?token=[A-Za-z0-9_-]+")


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.refuse_with: int | None = None
        self.slow_seconds = 0.0  # each message is accepted only after this long
        self._flowing = threading.Event()
        self._flowing.set()
        self.attempts = 0  # DATA commands seen, delivered or not
        self._lock = threading.Lock()
        self.port = servers.free_port(PORTS)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> "Mailbox":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._flowing.set()
        self._controller.stop()

    @property
    def stall(self) -> bool:
        return not self._flowing.is_set()

    @stall.setter
    def stall(self, value: bool) -> None:
        if value:
            self._flowing.clear()
        else:
            self._flowing.set()

    @property
    def settings(self) -> dict[str, str]:
        """The environment (or Settings overrides) that send to this server."""
        return {
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.port),
            "SMTP_SECURITY": "none",
            "EMAIL_FROM": "Keel <no-reply@keel.example.com>",
            "FRONTEND_URL": "https://app.example.com",
        }

    async def handle_DATA(self, _server: SMTP, _session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.attempts += 1
        if self.refuse_with is not None:
            return f"{self.refuse_with} Refused by the test server"
        if not self._flowing.is_set():
            # A hung server: nothing is answered until the test lets go, and what arrived
            # meanwhile is then refused (its sender may long be gone).
            await asyncio.to_thread(self._flowing.wait)
            return "421 Stalled; try again later"
        await asyncio.sleep(self.slow_seconds)
        content = envelope.content
        assert isinstance(content, bytes)
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.messages.append(message)
        return "250 Message accepted"

    def to(self, address: str, about: str = "") -> list[EmailMessage]:
        """The messages to `address` (whose subject contains `about`)."""
        with self._lock:
            return [
                message
                for message in self.messages
                if message["To"] == address and about in message["Subject"]
            ]

    def wait_for(
        self, address: str, count: int = 1, timeout: float = 30, about: str = ""
    ) -> list[EmailMessage]:
        """The messages to `address` once there are `count` of them (blocking: for threads)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = self.to(address, about)
            if len(received) >= count:
                return received
            time.sleep(0.05)
        raise AssertionError(f"{count} email(s) to {address} expected, got {self.to(address)}")

    def wait_attempts(self, count: int, timeout: float = 30) -> None:
        """Until `count` messages have reached the DATA stage, delivered or not (blocking)."""
        deadline = time.monotonic() + timeout
        while self.attempts < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{count} SMTP DATA expected, got {self.attempts}")
            time.sleep(0.02)

    async def received(self, address: str, count: int = 1, about: str = "") -> EmailMessage:
        """The `count`-th message to `address` (about `about`), waited for without blocking."""
        received = await asyncio.to_thread(self.wait_for, address, count, 30, about)
        return received[count - 1]


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    text = part.get_content()
    assert isinstance(text, str)
    return text


def link_in(message: EmailMessage) -> str:
    found = LINK.search(plain_text(message))
    assert found, plain_text(message)
    return found.group(0)


def token_in(message: EmailMessage) -> str:
    return parse_qs(urlsplit(link_in(message)).query)["token"][0]
