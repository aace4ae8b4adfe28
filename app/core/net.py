"""The client's address: the socket peer, or X-Forwarded-For when the peer is a trusted proxy."""

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.types import Scope

Network = IPv4Network | IPv6Network
UNKNOWN = "unknown"
_MAX_HOP_LENGTH = 64


def _parse(value: str) -> IPv4Address | IPv6Address | None:
    try:
        return ip_address(value)
    except ValueError:
        return None


def _trusted(address: IPv4Address | IPv6Address | None, proxies: Sequence[Network]) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_ip(scope: Scope, trusted_proxies: Sequence[Network]) -> str:
    """The address rate limits and logs attribute a request to.

    X-Forwarded-For is read only when the socket peer is in `trusted_proxies`, and then from the
    right: each trusted proxy appended the address it saw, so the rightmost hop that is not a
    trusted proxy is the client. Hops further left were written by the client and are ignored.
    """
    peer = scope.get("client")
    peer_host = peer[0] if peer else UNKNOWN
    if not trusted_proxies or not _trusted(_parse(peer_host), trusted_proxies):
        return peer_host
    forwarded = [
        value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"
    ]
    hops = [hop.strip() for hop in ",".join(forwarded).split(",") if hop.strip()]
    client = peer_host
    for hop in reversed(hops):
        address = _parse(hop)
        if not _trusted(address, trusted_proxies):
            return str(address) if address is not None else hop[:_MAX_HOP_LENGTH]
        client = hop
    return client  # every hop is a trusted proxy: the leftmost one is as far as we can see
