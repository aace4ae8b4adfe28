"""The README's Kubernetes commands, read from the README and checked against what kustomize
renders: on a fresh cluster the Job finds its configuration, a second run is not refused, the
wait outlasts the Job, and the image tag is written once (no cluster here)."""

import re
import shlex
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.ops.gunicorn_process import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"


def readme_commands() -> list[list[str]]:
    """The kubectl lines of the README's Kubernetes section, in order."""
    text = (REPO_ROOT / "README.md").read_text()
    section = text.split("### Kubernetes", 1)[1].split("\n### ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert block
    return [shlex.split(line) for line in block[1].splitlines() if line.startswith("kubectl")]


def render(path: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (apt-get install kubectl)")
    out = subprocess.run(
        [kubectl, "kustomize", str(REPO_ROOT / path)], capture_output=True, text=True, check=True
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def pod_specs(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        doc["spec"]["template"]["spec"] for doc in documents if doc["kind"] in {"Deployment", "Job"}
    ]


def test_the_job_is_applied_with_its_configuration_and_before_the_app() -> None:
    commands = readme_commands()
    verbs = [" ".join(command[1:3]) for command in commands]
    created = [command[4] for command in commands if command[1:3] == ["create", "secret"]]
    assert created == ["keel-secrets", "keel-pgbouncer-auth"]
    migrate = commands.index(["kubectl", "apply", "-k", "deploy/k8s/migrate"])
    app = commands.index(["kubectl", "apply", "-k", "deploy/k8s"])
    wait = verbs.index("wait --for=condition=complete")
    delete = commands.index(["kubectl", "delete", "job", "keel-migrate", "--ignore-not-found"])
    assert max(i for i, verb in enumerate(verbs) if verb == "create secret") < delete
    assert delete < migrate < wait < app
    assert commands[wait][-1] == "job/keel-migrate"

    rendered = render("deploy/k8s/migrate")
    kinds = {doc["kind"]: doc for doc in rendered}
    job = kinds["Job"]
    assert job["metadata"]["name"] == "keel-migrate"  # the name the README deletes and waits on
    # Everything the Job's pod reads is in the same apply, or a Secret created before it.
    sources = [
        next(iter(source.items()))
        for source in job["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    ]
    for kind, reference in sources:
        if kind == "configMapRef":
            assert kinds["ConfigMap"]["metadata"]["name"] == reference["name"]
        else:
            assert reference["name"] in created
    # The wait gives the Job all the time it may take.
    timeout = next(arg for arg in commands[wait] if arg.startswith("--timeout="))
    seconds = int(timeout.removeprefix("--timeout=").removesuffix("s"))
    assert seconds > job["spec"]["activeDeadlineSeconds"]


def test_the_app_and_the_job_run_the_same_image_whose_tag_is_written_once() -> None:
    app, job = render("deploy/k8s"), render("deploy/k8s/migrate")
    images = {
        container["image"]
        for spec in pod_specs(app) + pod_specs(job)
        for container in spec["containers"]
        if "pgbouncer" not in container["image"]
    }
    assert len(images) == 1
    (image,) = images
    tag = image.rpartition(":")[2]
    assert tag
    files = [path for path in K8S.rglob("*.yaml") if f"keel:{tag}" in path.read_text()]
    mentions = [path for path in K8S.rglob("*.yaml") if re.search(rf"\b{tag}\b", path.read_text())]
    assert files == []  # no manifest spells the full image
    assert [path.relative_to(K8S).as_posix() for path in mentions] == ["release/kustomization.yaml"]


def test_the_secret_holds_redis_url_and_policies_guard_the_stores() -> None:
    app = render("deploy/k8s")
    config = next(
        doc
        for doc in app
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "keel-config"
    )
    assert "REDIS_URL" not in config["data"]  # a credential once Redis has a password
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert "REDIS_URL" in secret["stringData"]
    policies = {
        doc["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: doc
        for doc in app
        if doc["kind"] == "NetworkPolicy"
    }
    assert {"keel", "keel-worker", "keel-pgbouncer", "postgres", "redis"} <= set(policies)
    for store in ("keel-pgbouncer", "postgres", "redis"):
        allowed = {
            peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for rule in policies[store]["spec"]["ingress"]
            if {port["port"] for port in rule["ports"]} != {"metrics"}  # PgBouncer's exporter
            for peer in rule["from"]
        }
        assert allowed <= {"keel", "keel-worker", "keel-pgbouncer", "keel-migrate"}, store
    api_peers = [peer for rule in policies["keel"]["spec"]["ingress"] for peer in rule["from"]]
    assert all("namespaceSelector" in peer for peer in api_peers)  # no pod of any namespace
