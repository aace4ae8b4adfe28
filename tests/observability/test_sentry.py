"""Sentry opt-in (CONTRACT.md section 12), against a loopback ingest: a 500 and a job that fails
for good arrive with the request id and the trace id, and nothing about the caller."""

import asyncio
from collections.abc import Callable
from typing import Any

import sentry_sdk
from pydantic import BaseModel

from app.config import Settings
from tests.conftest import _ClientContext
from tests.mailbox import Mailbox
from tests.observability.conftest import _TracedContext
from tests.observability.receivers import SentryIngest

SECRET_BODY = "body-value-that-must-stay-home"
SECRET_HEADER = "header-value-that-must-stay-home"
ADDRESS = "erin@example.com"


class Payload(BaseModel):
    note: str


def tags(event: dict[str, Any]) -> dict[str, str]:
    return dict(event.get("tags") or {})


async def test_a_500_is_reported_with_its_ids_and_without_the_request(
    make_traced: Callable[..., _TracedContext], sentry: SentryIngest
) -> None:
    context = make_traced(SENTRY_DSN=sentry.dsn)

    async with context as running:

        @running.app.post("/_test/boom")
        async def boom(payload: Payload) -> None:
            raise RuntimeError(f"failed on {payload.note}")

        answer = await running.client.post(
            "/_test/boom",
            json={"note": SECRET_BODY},
            headers={"X-Request-ID": "boom-1", "Authorization": f"Bearer {SECRET_HEADER}"},
        )
        assert answer.status_code == 500
        [server] = running.server_spans()
    # The lifespan's end flushes the queue.
    [event] = sentry.events
    assert tags(event)["request_id"] == "boom-1"
    assert tags(event)["trace_id"] == format(server.get_span_context().trace_id, "032x")
    [exception] = event["exception"]["values"]
    assert exception["type"] == "RuntimeError"
    raw = b"".join(sentry.raw)
    for private in (SECRET_BODY, SECRET_HEADER):  # (the source lines around a frame are sent)
        assert private.encode() not in raw
    assert "request" not in event
    assert all("vars" not in frame for frame in exception["stacktrace"]["frames"])


async def test_a_job_that_fails_for_good_is_reported(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    sentry: SentryIngest,
    mailbox: Mailbox,
) -> None:
    mailbox.refuse_with = 550
    settings = make_settings(SENTRY_DSN=sentry.dsn, JOB_MAX_ATTEMPTS=1, **mailbox.settings)
    async with make_client(settings) as client:
        answer = await client.post(
            "/api/v1/auth/register",
            json={"email": ADDRESS, "password": "p" * 12},
            headers={"X-Request-ID": "register-erin"},
        )
        assert answer.status_code == 201
        for _ in range(200):
            if mailbox.attempts:
                break
            await asyncio.sleep(0.05)
    [event] = [e for e in sentry.events if tags(e).get("job") == "send_verification_email"]
    assert tags(event)["request_id"] == "register-erin"
    assert "trace_id" not in tags(event)  # tracing is off here
    assert ADDRESS.encode() not in b"".join(sentry.raw)


async def test_without_a_dsn_nothing_is_initialised(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], _ClientContext]
) -> None:
    async with make_client(make_settings()):
        assert not sentry_sdk.is_initialized()
