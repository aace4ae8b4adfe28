"""Client IP from the socket, or from X-Forwarded-For only behind a trusted proxy."""

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from app.config import Settings
from app.core.middleware import EdgeMiddleware, client_ip
from app.core.rate_limit import ip_key

PROXIES = "10.0.0.0/8,fd00::/8"


def seen_client_ip(settings: Settings, peer: str | None, *forwarded: str) -> str:
    """The client address the app behind Keel's edge attributes a request to."""
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(client_ip(scope))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "client": (peer, 1234) if peer else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }
    asyncio.run(EdgeMiddleware(app, settings=settings)(scope, receive, send))
    return seen[0]


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("198.51.100.7", ["1.2.3.4"], "198.51.100.7"),  # untrusted peer: header ignored
        ("10.0.0.2", ["1.2.3.4"], "1.2.3.4"),
        ("10.0.0.2", ["6.6.6.6, 1.2.3.4"], "1.2.3.4"),  # a spoofed left hop is ignored
        ("10.0.0.2", ["6.6.6.6, 1.2.3.4, 10.0.0.9"], "1.2.3.4"),  # chain of trusted proxies
        ("10.0.0.2", ["6.6.6.6", "1.2.3.4"], "1.2.3.4"),  # several header lines
        ("10.0.0.2", [], "10.0.0.2"),
        ("10.0.0.2", ["10.0.0.5, 10.0.0.9"], "10.0.0.5"),  # only proxies: the farthest seen
        ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
        (None, [], "unknown"),
    ],
)
def test_client_ip(
    make_settings: Callable[..., Settings], peer: str | None, forwarded: list[str], expected: str
) -> None:
    settings = make_settings(TRUSTED_PROXIES=PROXIES)
    assert seen_client_ip(settings, peer, *forwarded) == expected


def test_forwarded_header_ignored_without_trusted_proxies(
    make_settings: Callable[..., Settings],
) -> None:
    assert seen_client_ip(make_settings(), "10.0.0.2", "1.2.3.4") == "10.0.0.2"


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_ipv6_clients_share_their_64(ip: str, key: str) -> None:
    assert ip_key(ip) == key
