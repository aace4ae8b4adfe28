"""The rate limiter reads the login form's username without taking the body from the endpoint."""

from typing import Any

import pytest
from starlette.datastructures import Headers

from app.config import Settings
from app.core.rate_limit import RateLimiter, RateLimitMiddleware, account_key, form_username

URLENCODED = b"grant_type=password&username=Ann%40Example.com&password=p%40ss+word"
MULTIPART = (
    b"--b0undary\r\n"
    b'Content-Disposition: form-data; name="username"\r\n\r\n'
    b"ann@example.com\r\n"
    b"--b0undary\r\n"
    b'Content-Disposition: form-data; name="password"\r\n\r\n'
    b"secret\r\n"
    b"--b0undary--\r\n"
)
FORMS = [
    ("application/x-www-form-urlencoded", URLENCODED, "Ann@Example.com"),
    ("multipart/form-data; boundary=b0undary", MULTIPART, "ann@example.com"),
]


@pytest.mark.parametrize(("content_type", "body", "username"), FORMS)
async def test_endpoint_receives_the_body_unchanged(
    settings: Settings, content_type: str, body: bytes, username: str
) -> None:
    received: list[bytes] = []

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    # The body arrives in three pieces, as a slow client would send it.
    pieces = [body[:7], body[7:20], body[20:]]
    messages = [
        {"type": "http.request", "body": piece, "more_body": index < 2}
        for index, piece in enumerate(pieces)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        pass

    limiter = RateLimiter(settings)
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/auth/token",
        "headers": [(b"content-type", content_type.encode())],
        "client": ("203.0.113.7", 1),
    }
    try:
        await RateLimitMiddleware(endpoint, limiter=limiter, settings=settings)(
            scope, receive, send
        )
    finally:
        await limiter.close()
    assert b"".join(received) == body
    headers = Headers(raw=scope["headers"])  # type: ignore[arg-type]
    assert await form_username(headers, body) == username


async def test_last_username_wins_like_the_endpoint() -> None:
    headers = Headers({"content-type": "application/x-www-form-urlencoded"})
    assert await form_username(headers, b"username=a%40x.io&username=b%40x.io") == "b@x.io"


async def test_unreadable_forms_give_no_account() -> None:
    json_headers = Headers({"content-type": "application/json"})
    assert await form_username(json_headers, b'{"username": "a"}') is None
    broken = Headers({"content-type": "multipart/form-data; boundary=zz"})
    assert await form_username(broken, b"--zz\r\nnot a part") is None


def test_account_key_is_a_digest_of_the_normalised_email() -> None:
    assert account_key(" Ann@Example.COM ") == account_key("ann@example.com")
    assert "ann" not in account_key("ann@example.com")
