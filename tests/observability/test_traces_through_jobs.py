"""One trace from the request to the email, through the outbox (CONTRACT.md section 12): the
real OTLP/HTTP exporters of the API and of a worker process, a loopback receiver parsing what
they send, a real SMTP server. Handed over at once, and handed over later by the worker's sweep
(the API could not reach Redis)."""

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.config import Settings
from tests.api.conftest import PASSWORD
from tests.conftest import _ClientContext
from tests.jobs.test_worker import jobs_redis  # noqa: F401  # the fixture
from tests.jobs.worker_process import Worker, running_worker
from tests.mailbox import Mailbox
from tests.observability.receivers import ExportedSpan, OtlpReceiver

REGISTER = "/api/v1/auth/register"
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens there: every hand-over fails


@pytest.fixture
def traced_worker(
    tmp_path: Path,
    database_url: str,
    jobs_redis: str,  # noqa: F811
    mailbox: Mailbox,
    otlp: OtlpReceiver,
) -> Iterator[Worker]:
    with running_worker(
        tmp_path,
        DATABASE_URL=database_url,
        REDIS_URL=jobs_redis,
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",  # milliseconds: the test waits for the worker's spans
        **mailbox.settings,
    ) as running:
        yield running


def one_trace_from_request_to_email(spans: list[ExportedSpan]) -> bool:
    register = [s for s in spans if s.name == f"POST {REGISTER}" and s.service == "keel"]
    if not register:
        return False
    in_trace = [s for s in spans if s.trace_id == register[0].trace_id]
    return any(s.name == "smtp send" for s in in_trace) and any(
        s.name == "job send_verification_email" for s in in_trace
    )


async def register_and_check_the_trace(
    api: _ClientContext, mailbox: Mailbox, otlp: OtlpReceiver
) -> None:
    async with api as client:
        answer = await client.post(
            REGISTER, json={"email": "ann@example.com", "password": PASSWORD}
        )
        assert answer.status_code == 201
        await mailbox.received("ann@example.com")
    # The API's lifespan has ended: its exporter has sent what it had.
    spans = await asyncio.to_thread(otlp.wait_for, one_trace_from_request_to_email)
    assert set(otlp.paths) == {"/v1/traces"}
    [server] = [s for s in spans if s.name == f"POST {REGISTER}"]
    trace = [s for s in spans if s.trace_id == server.trace_id]
    by_id = {s.span_id: s for s in trace}

    assert server.service == "keel"
    assert server.attributes["http.route"] == REGISTER
    assert server.attributes["http.response.status_code"] == 201
    api_sql = [s for s in trace if s.service == "keel" and "db.statement" in s.attributes]
    assert any(s.name.startswith("INSERT") for s in api_sql)
    assert all(s.parent_id == server.span_id for s in api_sql)

    [job] = [s for s in trace if s.name == "job send_verification_email"]
    assert job.service == "keel-worker"
    assert job.parent_id == server.span_id  # recorded while the request's span was current
    assert job.attributes["keel.job.attempt"] == 1
    [smtp] = [s for s in trace if s.name == "smtp send"]
    assert smtp.parent_id == job.span_id
    assert smtp.attributes["server.port"] == mailbox.port
    worker_sql = [s for s in trace if s.service == "keel-worker" and "db.statement" in s.attributes]
    assert worker_sql, "the job's statements are not in the trace"
    assert all(by_id[s.parent_id].name == job.name for s in worker_sql)


async def test_a_registration_is_one_trace_down_to_the_smtp_send(
    *,
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    jobs_redis: str,  # noqa: F811
    mailbox: Mailbox,
    otlp: OtlpReceiver,
    traced_worker: Worker,
) -> None:
    settings = make_settings(
        REDIS_URL=jobs_redis, OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint, **mailbox.settings
    )
    await register_and_check_the_trace(make_client(settings), mailbox, otlp)


async def test_the_trace_holds_when_the_sweep_hands_the_job_over(
    make_settings: Callable[..., Settings],
    make_client: Callable[[Settings], _ClientContext],
    mailbox: Mailbox,
    otlp: OtlpReceiver,
    traced_worker: Worker,
) -> None:
    """The API cannot reach Redis: the job waits in the outbox until the worker's sweep sends
    it, from the sweep's own context; the job's span still joins the request's trace."""
    settings = make_settings(
        REDIS_URL=UNREACHABLE_REDIS, OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint, **mailbox.settings
    )
    await register_and_check_the_trace(make_client(settings), mailbox, otlp)
    assert '"event":"jobs_swept"' in traced_worker.log_text()
