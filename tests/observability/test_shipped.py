"""What ships in deploy/observability (CONTRACT.md section 12): every metric that the alert rules
and the dashboard name is exported by a running production server (Gunicorn, multiprocess
metrics) or a running worker; and the Compose profile that shows them on a laptop."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from app.core.build import version
from tests.jobs.test_worker import jobs_redis  # noqa: F401  # the fixture
from tests.jobs.worker_process import Worker, running_worker
from tests.ops.gunicorn_process import Gunicorn, running_gunicorn

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED = REPO_ROOT / "deploy" / "observability"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
PROMQL_WORDS |= {"unless", "bool", "offset", "le", "inf"}


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels or ranges)."""
    text = re.sub(r'"[^"]*"', "", expression)  # label values and strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)  # grouping labels
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()[:1]
        if following != "(" and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((SHIPPED / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((SHIPPED / "dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def exported(text: str) -> dict[str, list[Any]]:
    """Every sample name a scrape can hold (histogram buckets, counters' _total...), with its
    samples; families declared without samples yet count too."""
    names: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for suffix in ("", "_total", "_bucket", "_sum", "_count", "_created"):
            names.setdefault(family.name + suffix, [])
        for sample in family.samples:
            names.setdefault(sample.name, []).append(sample)
    return names


@pytest.fixture
def production(tmp_path: Path) -> Iterator[Gunicorn]:
    with running_gunicorn(tmp_path) as server:
        yield server


@pytest.fixture
def worker(tmp_path: Path, production: Gunicorn, jobs_redis: str) -> Iterator[Worker]:  # noqa: F811
    with running_worker(
        tmp_path, DATABASE_URL=production.env["DATABASE_URL"], REDIS_URL=jobs_redis
    ) as running:
        yield running


def test_the_expressions_name_metrics() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le) (rate(x_bucket{route!~"/h.*"}[5m]))) / sum(y) > 1'
    ) == {"x_bucket", "y"}
    assert len(rule_expressions()) >= 9
    assert len(dashboard_expressions()) >= 12


def test_every_metric_in_the_rules_and_dashboard_is_exported(
    production: Gunicorn, worker: Worker
) -> None:
    httpx.get(f"{production.base_url}/api/v1/items", timeout=10)  # one request, one series
    api = exported(httpx.get(f"{production.base_url}/metrics", timeout=10).text)
    jobs = exported(httpx.get(f"{worker.health_url}/metrics", timeout=10).text)
    named = set().union(*map(metric_names, rule_expressions() + dashboard_expressions()))
    assert named - set(api) - set(jobs) == set()

    # The build's version, from both; process figures per Gunicorn worker (multiprocess mode).
    for scrape in (api, jobs):
        [build] = scrape["keel_build_info"]
        assert build.labels == {"version": version()}
    pids = {sample.labels["pid"] for sample in api["process_resident_memory_bytes"]}
    assert len(pids) == 2  # WORKERS=2
    assert all(sample.value > 0 for sample in api["process_cpu_seconds_total"])
    # The worker's own pool, and its jobs' figures, are its own.
    assert jobs["db_pool_size"][0].value > 0
    assert "jobs_oldest_waiting_seconds" in jobs
    assert jobs["jobs_oldest_waiting_seconds"][0].value == 0


def test_the_compose_profile_runs_a_pinned_backend_with_the_dashboard() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    lgtm = compose["services"]["lgtm"]
    assert lgtm["profiles"] == ["observability"]
    image, _, tag = lgtm["image"].partition(":")
    assert image == "grafana/otel-lgtm"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag)
    mounted = {volume.split(":")[0] for volume in lgtm["volumes"]}
    for name in ("alerts.yml", "dashboard.json", "prometheus.yml", "grafana-dashboards.yaml"):
        assert f"./deploy/observability/{name}" in mounted
    scrape = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    targets = {
        t for job in scrape["scrape_configs"] for c in job["static_configs"] for t in c["targets"]
    }
    assert targets == {"app:8000", "worker:9000"}
    assert "${OTEL_EXPORTER_OTLP_ENDPOINT:-}" in str(compose["x-keel"]["environment"])
