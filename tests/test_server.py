"""The Gunicorn machinery in app/server.py, piece by piece (the real thing: tests/ops)."""

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from gunicorn.config import Config as GunicornConfig
from gunicorn.glogging import Logger
from uvicorn.config import Config

from app import server
from app.server import DrainingServer, KeelWorker


async def test_sigterm_turns_readiness_503_at_once(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/ready")).status_code == 200
    uvicorn_server = DrainingServer(Config(app=app))

    uvicorn_server.handle_exit(signal.SIGTERM, None)

    assert uvicorn_server.should_exit  # Uvicorn's own shutdown still starts
    response = await client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["details"] == {"reason": "draining"}
    assert (await client.get("/health/live")).status_code == 200


def test_worker_sends_no_server_header_nor_access_log() -> None:
    assert KeelWorker.CONFIG_KWARGS["server_header"] is False
    assert KeelWorker.CONFIG_KWARGS["access_log"] is False


def _cgroup_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, v2: str | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    if v2 is not None:
        cpu_max.write_text(v2)
    monkeypatch.setattr(server, "CGROUP_V2_CPU_MAX", cpu_max)
    monkeypatch.setattr(server, "CGROUP_V1_QUOTA", tmp_path / "missing-quota")
    monkeypatch.setattr(server, "CGROUP_V1_PERIOD", tmp_path / "missing-period")


@pytest.mark.parametrize(
    ("cpu_max", "affinity", "expected"),
    [
        ("max 100000\n", 8, 8),  # no quota: the affinity mask decides
        ("150000 100000\n", 8, 2),  # 1.5 CPUs: round up, a half CPU still serves
        ("50000 100000\n", 8, 1),
        ("400000 100000\n", 2, 2),  # the quota never raises the count above the mask
        (None, 3, 3),  # no cgroup file at all (bare metal, macOS)
    ],
)
def test_workers_default_to_the_cpus_the_container_may_use(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cpu_max: str | None,
    affinity: int,
    expected: int,
) -> None:
    _cgroup_files(monkeypatch, tmp_path, cpu_max)
    monkeypatch.setattr(server.os, "sched_getaffinity", lambda _pid: set(range(affinity)))
    assert server.available_cpus() == expected


def test_cgroup_v1_quota(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "quota").write_text("200000\n")
    (tmp_path / "period").write_text("100000\n")
    monkeypatch.setattr(server, "CGROUP_V2_CPU_MAX", tmp_path / "missing")
    monkeypatch.setattr(server, "CGROUP_V1_QUOTA", tmp_path / "quota")
    monkeypatch.setattr(server, "CGROUP_V1_PERIOD", tmp_path / "period")
    assert server.cgroup_cpu_quota() == 2.0
    (tmp_path / "quota").write_text("-1\n")  # v1's "unlimited"
    assert server.cgroup_cpu_quota() is None


def test_metrics_dir_is_wiped_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    (directory / "README").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))

    assert server.prepare_metrics_dir() == (directory, False)
    assert sorted(path.name for path in directory.iterdir()) == ["README"]


def test_metrics_dir_is_created_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    path, created = server.prepare_metrics_dir()
    try:
        assert created
        assert path.is_dir()
        assert server.os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(path)
    finally:
        path.rmdir()


@pytest.fixture
def _restore_uvicorn_loggers() -> Iterator[None]:
    """Gunicorn's Logger and UvicornWorker rewire global loggers: put them back afterwards."""
    names = ("uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")
    loggers = [logging.getLogger(name) for name in names]
    saved = [(logger.handlers[:], logger.propagate, logger.level) for logger in loggers]
    yield
    for logger, (handlers, propagate, level) in zip(loggers, saved, strict=True):
        logger.handlers[:], logger.propagate, logger.level = handlers, propagate, level


@pytest.mark.usefixtures("_restore_uvicorn_loggers")
def test_uvicorn_stops_waiting_before_gunicorn_kills_the_worker() -> None:
    cfg = GunicornConfig()
    cfg.set("graceful_timeout", 30)
    worker = KeelWorker(0, os.getpid(), [], None, 30, cfg, Logger(cfg))
    try:
        # Stuck requests are cancelled at 28 s, so the lifespan shutdown still runs before 30 s.
        assert worker.config.timeout_graceful_shutdown == 30 - server.SHUTDOWN_MARGIN_SECONDS
        assert worker.config.server_header is False
    finally:
        worker.tmp.close()
