"""What can be checked without a Docker engine or a cluster: the files themselves."""

import os
import re
import runpy
import secrets
import tomllib
from typing import Any
from unittest import mock

import httpx
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from app.config import load_settings
from tests.ops.gunicorn_process import REPO_ROOT, dockerfile_instruction

K8S = REPO_ROOT / "deploy" / "k8s"
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def manifests() -> dict[str, dict[str, Any]]:
    paths = [*K8S.glob("*.yaml"), K8S / "config" / "configmap.yaml", K8S / "migrate" / "job.yaml"]
    documents = [doc for path in sorted(paths) for doc in yaml.safe_load_all(path.read_text())]
    # By kind; the job worker's Deployment beside the API's as "WorkerDeployment".
    return {
        "WorkerDeployment"
        if doc.get("metadata", {}).get("name") == "keel-worker"
        else doc["kind"]: doc
        for doc in documents
        if doc and "kind" in doc
    }


@pytest.fixture(scope="module")
def kinds() -> dict[str, dict[str, Any]]:
    return manifests()


def container(kinds: dict[str, dict[str, Any]], kind: str) -> dict[str, Any]:
    spec = kinds[kind]["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    result: dict[str, Any] = spec["containers"][0]
    return result


def test_every_manifest_is_present(kinds: dict[str, dict[str, Any]]) -> None:
    expected = {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
        "Job",
        "Kustomization",
        "NetworkPolicy",
    }
    assert expected <= set(kinds)
    assert kinds["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    assert kinds["PodDisruptionBudget"]["apiVersion"] == "policy/v1"


async def test_probes_point_at_real_routes(
    kinds: dict[str, dict[str, Any]], client: httpx.AsyncClient
) -> None:
    app = container(kinds, "Deployment")
    assert app["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert app["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    annotations = kinds["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    paths = [app[probe]["httpGet"]["path"] for probe in PROBES] + [
        annotations["prometheus.io/path"]
    ]
    for path in paths:  # each answers 200 from create_app(), not the 404 of an unknown route
        assert (await client.get(path)).status_code == 200, path
    for probe in PROBES:
        assert app[probe]["httpGet"]["port"] == app["ports"][0]["name"]


def gunicorn_setting(name: str) -> Any:
    """A setting as Gunicorn reads it: gunicorn.conf.py executed as a module (in a copy of the
    environment: the file exports a generated SECRET_KEY, which later tests must not see)."""
    with mock.patch.dict(os.environ):
        return runpy.run_path(str(REPO_ROOT / "gunicorn.conf.py"))[name]


def test_pod_outlives_prestop_sleep_plus_graceful_timeout(kinds: dict[str, dict[str, Any]]) -> None:
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    command = container(kinds, "Deployment")["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    sleep = int(command[1])
    assert sleep > 0
    assert pod["terminationGracePeriodSeconds"] > sleep + gunicorn_setting("graceful_timeout")


@pytest.mark.parametrize("kind", ["Deployment", "WorkerDeployment", "Job"])
def test_pods_run_locked_down(kinds: dict[str, dict[str, Any]], kind: str) -> None:
    pod = kinds[kind]["spec"]["template"]["spec"]
    app = container(kinds, kind)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert app["securityContext"]["readOnlyRootFilesystem"] is True
    assert app["securityContext"]["allowPrivilegeEscalation"] is False
    assert app["resources"]["requests"]
    assert app["resources"]["limits"]
    mounts = {mount["mountPath"]: mount["name"] for mount in app["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]  # noqa: S108  # the one writable path
    sources = {next(iter(source.values()))["name"] for source in app["envFrom"]}
    assert sources == {kinds["ConfigMap"]["metadata"]["name"], kinds["Secret"]["metadata"]["name"]}


def filled_secret(kinds: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The example Secret with every placeholder replaced by a random value, as an operator
    does (as shipped, production refuses it: tests/test_config_secrets.py)."""
    entries: dict[str, str] = kinds["Secret"]["stringData"]
    return {
        name: secrets.token_urlsafe(32) if "REPLACE" in value else value
        for name, value in entries.items()
    }


def test_config_and_secret_hold_valid_settings(kinds: dict[str, dict[str, Any]]) -> None:
    config = kinds["ConfigMap"]["data"]
    assert config["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")  # noqa: S108
    values = config | filled_secret(kinds)
    settings = load_settings(_env_file=None, **values)  # refuses anything invalid for production
    assert settings.is_production


def test_worker_deployment_runs_the_worker_with_its_liveness_probe(
    kinds: dict[str, dict[str, Any]],
) -> None:
    worker = container(kinds, "WorkerDeployment")
    pod = kinds["WorkerDeployment"]["spec"]["template"]["spec"]
    assert worker["command"] == ["python", "-m", "app", "worker"]
    assert worker["image"] == container(kinds, "Deployment")["image"]
    port = worker["ports"][0]
    values = kinds["ConfigMap"]["data"] | filled_secret(kinds)
    settings = load_settings(_env_file=None, **values)
    assert port["containerPort"] == settings.WORKER_HEALTH_PORT
    for probe in ("startupProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/health/live", "port": port["name"]}
    # SIGTERM lets running jobs finish: the pod outlives the job lease.
    assert pod["terminationGracePeriodSeconds"] > settings.job_lease_seconds
    labels = kinds["WorkerDeployment"]["spec"]["template"]["metadata"]["labels"]
    assert kinds["WorkerDeployment"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "worker-deployment.yaml" in kinds["Kustomization"]["resources"]


def test_selectors_match_the_pods(kinds: dict[str, dict[str, Any]]) -> None:
    labels = kinds["Deployment"]["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        spec = kinds[kind]["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector.items() <= labels.items()
    assert (
        kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == kinds["Deployment"]["metadata"]["name"]
    )
    assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == "http"


def test_migration_job_runs_the_cli_migrate(kinds: dict[str, dict[str, Any]]) -> None:
    job = kinds["Job"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container(kinds, "Job")["command"] == ["python", "-m", "app", "migrate"]


def test_kustomization_lists_files_that_exist(kinds: dict[str, dict[str, Any]]) -> None:
    for name in kinds["Kustomization"]["resources"]:
        assert (K8S / name).exists()  # a file, or a directory with its own kustomization


def test_compose_file() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"app", "postgres", "redis", "migrate", "worker", "mailpit"} <= set(services)
    for name in ("postgres", "redis"):  # pinned to a release, never whatever `latest` is today
        image, _, tag = services[name]["image"].partition(":")
        assert image == name
        assert tag
        assert tag != "latest"
    assert services["worker"]["command"] == ["python", "-m", "app", "worker"]
    assert "9000/health/live" in " ".join(services["worker"]["healthcheck"]["test"])
    assert services["worker"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    image, _, tag = services["mailpit"]["image"].partition(":")
    assert image == "axllent/mailpit"
    assert tag
    assert tag != "latest"
    assert services["migrate"]["command"] == ["python", "-m", "app", "migrate"]
    depends = services["app"]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"]
    assert services["app"]["env_file"]
    assert services["migrate"]["env_file"]
    assert "pgdata" in compose["volumes"]
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    # Secrets are only referenced (`${...}` from .env), never written in the file.
    for service in services.values():
        for key, env_value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or "SECRET" in key:
                assert str(env_value).startswith("${"), key


def test_dockerfile_shape() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(stages) >= 2
    # The image's Python is one the project declares it supports.
    version = re.search(r"^ARG PYTHON_VERSION=(\S+)", text, flags=re.MULTILINE)
    assert version
    assert all(stage.startswith("python:${PYTHON_VERSION}") for stage in stages)
    requires = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert SpecifierSet(requires["requires-python"]).contains(f"{version[1]}.0")
    assert "uv sync --frozen --no-dev" in text  # the locked versions, as tested
    # The server runs as a non-root user the image itself creates.
    user = re.findall(r"^USER (\d+):(\d+)", text, flags=re.MULTILINE)
    assert user
    uid, gid = user[-1]
    assert int(uid) > 0
    assert int(gid) > 0
    assert f"--uid {uid}" in text
    assert f"--gid {gid}" in text
    assert dockerfile_instruction("CMD") == ["gunicorn", "-c", "gunicorn.conf.py", "app.main:app"]
    assert "/health/live" in " ".join(dockerfile_instruction("HEALTHCHECK"))
    ignored = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignored  # an allow-list: .env and other secrets stay out
    assert not any(line.startswith("!.env") and line != "!.env.example" for line in ignored)


def test_compose_exposes_nothing_beyond_this_machine_and_checks_postgres_over_tcp() -> None:
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published
    assert all(str(port).startswith("127.0.0.1:") for port in published), published
    # pg_isready over the socket passes during the image's socket-only init server.
    check = services["postgres"]["healthcheck"]["test"]
    assert check[check.index("-h") + 1] == "127.0.0.1"
    example = (REPO_ROOT / ".env.example").read_text()
    assert re.search(r"^POSTGRES_PASSWORD=", example, flags=re.MULTILINE)
