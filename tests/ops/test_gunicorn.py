"""The production server for real: the Dockerfile's CMD, Gunicorn with 2 Uvicorn workers."""

import asyncio
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.gunicorn_process import Gunicorn, dockerfile_instruction, running_gunicorn

IN_FLIGHT = 24
EXIT_LIMIT_SECONDS = 60  # a bound for a hung server, never an expectation


def scrape(server: Gunicorn) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(f"{server.base_url}/metrics", timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def worker_pids_with_counters(server: Gunicorn) -> set[str]:
    return {path.stem.rpartition("_")[2] for path in server.metrics_dir.glob("counter_*.db")}


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    with running_gunicorn(tmp_path_factory.mktemp("gunicorn")) as server:
        yield server


async def test_metrics_are_summed_across_workers(gunicorn: Gunicorn) -> None:
    live = (
        "http_requests_total",
        frozenset({"method": "GET", "route": "/health/live", "status": "200"}.items()),
    )
    before = scrape(gunicorn).get(live, 0.0)
    sent = 0
    # Concurrent batches on fresh connections until both workers have answered some (the
    # kernel decides which worker accepts a connection).
    for _ in range(50):
        async with httpx.AsyncClient(base_url=gunicorn.base_url, timeout=10) as client:
            responses = await asyncio.gather(*(client.get("/health/live") for _ in range(20)))
        assert {response.status_code for response in responses} == {200}
        sent += len(responses)
        if len(worker_pids_with_counters(gunicorn)) == 2:
            break
    assert len(worker_pids_with_counters(gunicorn)) == 2
    # A worker counts a request just after sending its answer: give the last ones a moment.
    in_progress = ("http_requests_in_progress", frozenset({"method": "GET"}.items()))
    for _ in range(50):
        after = scrape(gunicorn)
        if after[live] - before == sent and after[in_progress] == 1:
            break
        await asyncio.sleep(0.05)
    assert after[live] - before == sent
    assert after[in_progress] == 1  # the scrape itself, on whichever worker answered it


async def test_connections_opened_at_once_are_spread_over_the_workers(gunicorn: Gunicorn) -> None:
    """A client opening 64 connections at once (a proxy's pool, a load test) gets them spread
    over both workers, not most of them on whichever worker was idle: admission control is per
    worker, so a lopsided split refuses requests on one worker while the other has room. With
    one shared listening socket the first batch went all 64 to one worker, 4 runs out of 4;
    with a socket per worker (`reuse_port`) the kernel hashes connections over them, and a
    batch split worse than 48/16 comes about once in 20,000."""
    connections = 64
    splits = []
    for batch in range(5):
        ids = [f"spread-{batch}-{i}" for i in range(connections)]
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(
            base_url=gunicorn.base_url, timeout=10, limits=limits
        ) as client:
            responses = await asyncio.gather(
                *(client.get("/health/live", headers={"X-Request-ID": i}) for i in ids)
            )
        assert {response.status_code for response in responses} == {200}
        records = [json.loads(line) for line in gunicorn.log_lines() if line.strip()]
        served_by = [record["pid"] for record in records if record.get("request_id") in ids]
        assert len(served_by) == connections
        splits.append(sorted((served_by.count(pid) for pid in set(served_by)), reverse=True))
    assert all(len(split) == 2 and split[1] >= 16 for split in splits), splits


def test_production_headers_and_json_logs(gunicorn: Gunicorn) -> None:
    response = httpx.get(f"{gunicorn.base_url}/health/live")
    assert response.status_code == 200
    assert "server" not in response.headers
    lines = [line for line in gunicorn.log_lines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]  # every line, Gunicorn's own included
    assert any(record.get("logger") == "gunicorn.error" for record in records)
    assert any("Booting worker" in record["event"] for record in records)


def test_dockerfile_healthcheck_command(gunicorn: Gunicorn) -> None:
    healthcheck = dockerfile_instruction("HEALTHCHECK")
    assert healthcheck[0] == "python"
    result = subprocess.run(healthcheck, env=gunicorn.env, capture_output=True, check=False)
    assert result.returncode == 0, result.stderr
    nobody = gunicorn.env | {"BIND": "127.0.0.1:1"}  # nothing listens there
    assert subprocess.run(healthcheck, env=nobody, capture_output=True, check=False).returncode != 0


@pytest.fixture
def drain_server(tmp_path: Path) -> Iterator[Gunicorn]:
    # Every held request admitted, even when one worker accepts them all (admission control's
    # limit is per worker; its refusals have their own tests).
    limit = str(IN_FLIGHT)
    with running_gunicorn(
        tmp_path, app="tests.ops.drain_app:app", MAX_CONCURRENT_REQUESTS=limit
    ) as server:
        yield server


async def test_sigterm_drains_in_flight_requests_then_exits_0(drain_server: Gunicorn) -> None:
    limits = httpx.Limits(max_connections=IN_FLIGHT + 5)
    async with httpx.AsyncClient(
        base_url=drain_server.base_url, timeout=60, limits=limits
    ) as client:
        held = [asyncio.create_task(client.get("/_test/until-draining")) for _ in range(IN_FLIGHT)]
        await _until_in_flight(drain_server, IN_FLIGHT)

        drain_server.process.send_signal(signal.SIGTERM)
        responses = await asyncio.gather(*held)
        exit_code = await asyncio.to_thread(drain_server.process.wait, EXIT_LIMIT_SECONDS)

    assert [response.status_code for response in responses] == [200] * IN_FLIGHT
    bodies = [response.json() for response in responses]  # complete, parseable bodies
    assert all(body["draining"] is True for body in bodies)  # answered after the SIGTERM
    assert all(body["ready_status"] == 503 for body in bodies)  # readiness already 503
    assert exit_code == 0, drain_server.log.read_text()
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as fresh:
            await fresh.get(f"{drain_server.base_url}/health/live")


async def _until_in_flight(server: Gunicorn, count: int) -> None:
    """Wait until the workers hold `count` requests (plus the scrape asking)."""
    key = ("http_requests_in_progress", frozenset({"method": "GET"}.items()))
    for _ in range(600):
        if (await asyncio.to_thread(scrape, server)).get(key) == count + 1:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{count} requests never got in flight")
