"""Client IP from the socket, or from X-Forwarded-For only behind a trusted proxy."""

from ipaddress import ip_network

import pytest

from app.core.net import client_ip
from app.core.rate_limit_middleware import ip_key

PROXIES = [ip_network("10.0.0.0/8"), ip_network("fd00::/8")]


def scope(peer: str | None, *forwarded: str) -> dict[str, object]:
    return {
        "client": (peer, 1234) if peer else None,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
    }


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
def test_client_ip(peer: str | None, forwarded: list[str], expected: str) -> None:
    assert client_ip(scope(peer, *forwarded), PROXIES) == expected


def test_forwarded_header_ignored_without_trusted_proxies() -> None:
    assert client_ip(scope("10.0.0.2", "1.2.3.4"), []) == "10.0.0.2"


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
