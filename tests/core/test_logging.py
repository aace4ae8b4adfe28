"""One JSON access line per request, bound to the request id; secrets never reach the logs."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
import structlog
from fastapi import FastAPI, Form

from app.config import Settings
from app.core.logging import REDACTED, redact_secrets
from tests.conftest import _ClientContext

SECRETS = ("s3cr3t-bearer-token", "cookie-s3cr3t", "hunter2-passw0rd", "query-t0ken")


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def add_login_like_route(app: FastAPI) -> None:
    @app.post("/api/v1/_test/login")
    async def login(username: str = Form(), password: str = Form()) -> dict[str, str]:
        structlog.get_logger("tests").info("login_attempt", username=username, password=password)
        return {"username": username}


async def test_access_line_is_json_with_request_id_and_no_secrets(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    capfd: pytest.CaptureFixture[str],
) -> None:
    context = make_client(make_settings(LOG_FORMAT="json"))
    add_login_like_route(context.app)
    async with context as client:
        capfd.readouterr()
        response = await client.post(
            "/api/v1/_test/login?access_token=query-t0ken",
            data={"username": "ann@example.com", "password": "hunter2-passw0rd"},
            headers={
                "X-Request-ID": "log-test-1",
                "Authorization": "Bearer s3cr3t-bearer-token",
                "Cookie": "session=cookie-s3cr3t",
            },
        )
    assert response.status_code == 200
    output = capfd.readouterr().err
    for secret in SECRETS:
        assert secret not in output
    lines = json_lines(output)
    access = [line for line in lines if line.get("event") == "request"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "log-test-1"
    assert line["method"] == "POST"
    assert line["route"] == "/api/v1/_test/login"
    assert line["status"] == 200
    assert isinstance(line["duration_ms"], float)
    assert line["client_ip"] == "203.0.113.7"
    assert line["level"] == "info"
    assert "timestamp" in line
    # The endpoint's own line is bound to the same request, and its password is redacted.
    attempt = next(line for line in lines if line.get("event") == "login_attempt")
    assert attempt["request_id"] == "log-test-1"
    assert attempt["password"] == REDACTED


async def test_unhandled_error_is_logged_with_request_id_and_traceback(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    capfd: pytest.CaptureFixture[str],
) -> None:
    context = make_client(make_settings(LOG_FORMAT="json"))

    @context.app.get("/api/v1/_test/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    async with context as client:
        capfd.readouterr()
        await client.get("/api/v1/_test/boom", headers={"X-Request-ID": "boom-1"})
    lines = json_lines(capfd.readouterr().err)
    errors = [line for line in lines if line.get("event") == "unhandled_exception"]
    assert len(errors) == 1
    assert errors[0]["request_id"] == "boom-1"
    assert "RuntimeError: kaboom" in errors[0]["exception"]
    access = next(line for line in lines if line.get("event") == "request")
    assert access["status"] == 500


def test_redaction_covers_secret_like_keys() -> None:
    event = {
        "event": "x",
        "password": "p",
        "new_password": "p",
        "access_token": "t",
        "Authorization": "a",
        "cookie": "c",
        "client_secret": "s",
        "email": "ann@example.com",
    }
    redacted = redact_secrets(None, "info", dict(event))
    assert redacted["email"] == "ann@example.com"
    assert redacted["event"] == "x"
    assert all(redacted[key] == REDACTED for key in event if key not in {"event", "email"})


async def test_access_lines_of_concurrent_requests_are_whole_and_written_without_delay(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Lines of requests ending together: every one whole, and none held back."""
    context = make_client(make_settings(LOG_FORMAT="json"))
    async with context as client:
        capfd.readouterr()
        ids = [f"batch-{n}" for n in range(40)]
        responses = await asyncio.gather(
            *(client.get("/health/live", headers={"X-Request-ID": rid}) for rid in ids)
        )
        assert all(response.status_code == 200 for response in responses)
        await asyncio.sleep(0)  # one turn of the event loop
        output = capfd.readouterr().err
        access = [line for line in json_lines(output) if line.get("event") == "request"]
        assert sorted(line["request_id"] for line in access) == sorted(ids)
        assert all(line["route"] == "/health/live" for line in access)
        # The next request is written on its own, long before the app shuts down.
        await client.get("/health/live", headers={"X-Request-ID": "single-1"})
        await asyncio.sleep(0)
        access = [line for line in json_lines(capfd.readouterr().err) if "request_id" in line]
        assert [line["request_id"] for line in access] == ["single-1"]
