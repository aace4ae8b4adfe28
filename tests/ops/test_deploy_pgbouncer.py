"""deploy/k8s/pgbouncer: the pooler the app's ConfigMap points at, and its pgbouncer.ini run by
a real PgBouncer in front of the test database with Keel's own engine going through it."""

import configparser
import re
from typing import Any
from urllib.parse import urlsplit

import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.config import load_settings
from app.core import database
from tests.conftest import TEST_DATABASE_URL, missing, require_pgbouncer
from tests.ops.gunicorn_process import REPO_ROOT
from tests.ops.test_deploy_files import K8S, manifests
from tests.ops.test_first_install import render
from tests.pgbouncer import ThrowawayPgBouncer

POOLER = K8S / "pgbouncer"
# The lines the test's own PgBouncer needs instead: its address, socket directory and auth.
LOCAL_LINES = {"listen_addr", "listen_port", "unix_socket_dir", "auth_type", "auth_file"}


def pooler_manifests() -> dict[str, dict[str, Any]]:
    documents = [
        doc
        for path in sorted(POOLER.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]
    return {doc["kind"]: doc for doc in documents if doc and "kind" in doc}


def pgbouncer_ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read_string(pooler_manifests()["ConfigMap"]["data"]["pgbouncer.ini"])
    return parser


def test_app_config_points_at_the_pooler_and_migrations_past_it() -> None:
    app, pooler, ini = manifests(), pooler_manifests(), pgbouncer_ini()
    config = app["ConfigMap"]["data"]
    pooled, direct = make_url(config["DATABASE_URL"]), make_url(config["DATABASE_DIRECT_URL"])
    assert config["DATABASE_POOLER"] == "transaction"
    assert "pgbouncer" in app["Kustomization"]["resources"]
    service = pooler["Service"]
    assert (pooled.host, pooled.port) == (
        service["metadata"]["name"],
        service["spec"]["ports"][0]["port"],
    )
    assert (direct.host, direct.port) == ("postgres", 5432)
    assert ini["pgbouncer"]["pool_mode"] == "transaction"
    assert int(ini["pgbouncer"]["listen_port"]) == service["spec"]["ports"][0]["port"]
    assert pooled.database in ini["databases"]
    assert (pooled.password, direct.password) == (None, None)  # PGPASSWORD, from the Secret
    labels = pooler["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    for name in pooler["Kustomization"]["resources"]:
        assert (POOLER / name).is_file()


async def test_shipped_pgbouncer_ini_carries_keel() -> None:
    """Every pooling setting of the shipped pgbouncer.ini, run by Debian's PgBouncer."""
    if not TEST_DATABASE_URL:
        missing("PostgreSQL", "set TEST_DATABASE_URL=postgresql+asyncpg://…")
    require_pgbouncer()
    shipped = {k: v for k, v in pgbouncer_ini()["pgbouncer"].items() if k not in LOCAL_LINES}
    with ThrowawayPgBouncer(TEST_DATABASE_URL, **shipped) as pooler:
        settings = load_settings(
            _env_file=None, DATABASE_URL=pooler.url(), DATABASE_POOLER="transaction"
        )
        engine = database.create_engine(settings)
        try:
            async with engine.connect() as connection:
                assert await connection.scalar(text("SELECT 1")) == 1
        finally:
            await engine.dispose()


def _rendered() -> list[dict[str, Any]]:
    return render("deploy/k8s")


def _named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_pgbouncers_go_one_at_a_time_and_never_three() -> None:
    """Drains, rollouts and a node lost each take at most one PgBouncer, and a rollout never
    runs a third (its pool would be PostgreSQL connections nobody counted)."""
    documents = _rendered()
    pooler = _named(documents, "Deployment", "keel-pgbouncer")
    labels = _pod_labels(pooler)
    assert pooler["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert pooler["spec"]["replicas"] >= 2  # one serves while the other is replaced
    budgets = {
        d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "PodDisruptionBudget"
    }
    deployments = [d for d in documents if d["kind"] == "Deployment"]
    selected = {
        name: [
            d["metadata"]["name"]
            for d in deployments
            if spec["selector"]["matchLabels"].items() <= _pod_labels(d).items()
        ]
        for name, spec in budgets.items()
    }
    covering = [name for name, names in selected.items() if "keel-pgbouncer" in names]
    assert len(covering) == 1, selected
    assert selected[covering[0]] == ["keel-pgbouncer"]  # its budget is not shared with Keel's
    assert budgets[covering[0]]["maxUnavailable"] == 1
    spread = pooler["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert any(
        rule["topologyKey"] == "kubernetes.io/hostname"
        and rule["maxSkew"] == 1
        and rule["whenUnsatisfiable"] == "DoNotSchedule"
        and rule["labelSelector"]["matchLabels"].items() <= labels.items()
        for rule in spread
    )


def test_exporter_reads_the_admin_console_with_the_secrets_connection_string() -> None:
    documents = _rendered()
    pooler = _named(documents, "Deployment", "keel-pgbouncer")
    pod = pooler["spec"]["template"]
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    exporter = containers["exporter"]
    image, _, tag = exporter["image"].rpartition(":")
    assert image.endswith("prometheuscommunity/pgbouncer-exporter")
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), tag  # pinned, never latest
    (variable,) = exporter["env"]
    assert variable["name"] == "PGBOUNCER_EXPORTER_CONNECTION_STRING"
    reference = variable["valueFrom"]["secretKeyRef"]
    secret = pooler_manifests()["Secret"]
    assert reference["name"] == secret["metadata"]["name"]
    url = urlsplit(secret["stringData"][reference["key"]])
    ini = pgbouncer_ini()["pgbouncer"]
    assert (url.hostname, url.port, url.path) == (
        "127.0.0.1",
        int(ini["listen_port"]),
        "/pgbouncer",
    )
    assert url.username in [user.strip() for user in ini["stats_users"].split(",")]
    users = [
        line.split()[0].strip('"') for line in secret["stringData"]["userlist.txt"].splitlines()
    ]
    assert users == ["keel", url.username]
    # PgBouncer's auth volume holds the userlist only, not the exporter's connection string.
    (auth,) = [v for v in pod["spec"]["volumes"] if v["name"] == "auth"]
    assert [item["key"] for item in auth["secret"]["items"]] == ["userlist.txt"]
    (port,) = exporter["ports"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port["containerPort"])
    assert "readinessProbe" not in exporter  # the pod's readiness is PgBouncer's alone
    # Prometheus may reach it: the policy that admits Keel's pods to PgBouncer admits it too.
    (policy,) = [
        d
        for d in documents
        if d["kind"] == "NetworkPolicy"
        and d["spec"]["podSelector"]["matchLabels"].items() <= _pod_labels(pooler).items()
    ]
    admitted = [
        port_rule["port"] for rule in policy["spec"]["ingress"] for port_rule in rule["ports"]
    ]
    assert port["name"] in admitted or port["containerPort"] in admitted


# PostgreSQL's defaults, which deploy/k8s does not run: the arithmetic is against them.
MAX_CONNECTIONS = 100
SUPERUSER_RESERVED_CONNECTIONS = 3
# "n x (a + b) = c": the arithmetic a comment or the README states.
STATEMENT = re.compile(r"[\d(][\d()+\-x ]*[+\-x][\d()+\-x ]*?= *(\d+)")


def _statements(text: str) -> list[str]:
    """Every arithmetic statement of `text`: the README's multiplication and minus signs as
    x and -, its bold and the comments' line breaks removed."""
    flat = re.sub(r"\n\s*#\s*", " ", text).replace("\u00d7", "x").replace("\u2212", "-")
    flat = re.sub(r"\s+", " ", flat.replace("**", ""))
    statements = []
    for match in STATEMENT.finditer(flat):
        statement = match[0].strip()
        if statement.count("(") > statement.count(")"):  # "(3 x 45 = 135 > ...)" in prose
            statement = statement.removeprefix("(")
        statements.append(statement)
    return statements


def _true(statement: str) -> bool:
    left, right = statement.rsplit("=", 1)
    return bool(eval(left.replace("x", "*"), {"__builtins__": {}}) == int(right))  # noqa: S307


def test_connection_arithmetic_counts_every_client_and_matches_the_comments() -> None:
    documents = _rendered()
    config = _named(documents, "ConfigMap", "keel-config")["data"]
    api = _named(documents, "Deployment", "keel")
    workers = _named(documents, "Deployment", "keel-worker")
    pooler = _named(documents, "Deployment", "keel-pgbouncer")
    hpa = _named(documents, "HorizontalPodAutoscaler", "keel")
    (job,) = [d for d in render("deploy/k8s/migrate") if d["kind"] == "Job"]
    ini = pgbouncer_ini()["pgbouncer"]

    processes = int(config["WORKERS"])
    pool, overflow = int(config["DATABASE_POOL_SIZE"]), int(config["DATABASE_MAX_OVERFLOW"])
    api_pods, api_surge = hpa["spec"]["maxReplicas"], api["spec"]["strategy"]["rollingUpdate"]
    worker_pods = workers["spec"]["replicas"]
    worker_surge = workers["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    server_pool, reserve = int(ini["default_pool_size"]), int(ini["reserve_pool_size"])
    poolers = pooler["spec"]["replicas"]
    assert pooler["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0  # else count it too
    # The migration Job: one pod at a time, one connection (NullPool, one migration at a time).
    assert job["spec"].get("parallelism", 1) == 1
    direct = 1

    api_clients = (api_pods + api_surge["maxSurge"]) * processes * (pool + overflow + 1)
    worker_clients = (worker_pods + worker_surge) * (pool + overflow)  # no health connection
    clients = api_clients + worker_clients
    servers = poolers * (server_pool + reserve)
    available = MAX_CONNECTIONS - SUPERUSER_RESERVED_CONNECTIONS
    assert clients <= int(ini["max_client_conn"])  # on one PgBouncer while the other drains
    assert servers + direct < available

    expected = [
        f"({api_pods} + {api_surge['maxSurge']}) x {processes} x ({pool} + {overflow} + 1) = "
        f"{api_clients}",
        f"({worker_pods} + {worker_surge}) x ({pool} + {overflow}) = {worker_clients}",
        f"{api_clients} + {worker_clients} = {clients}",
        f"{poolers} x ({server_pool} + {reserve}) = {servers}",
        f"{servers} + {direct} = {servers + direct}",
        f"{MAX_CONNECTIONS} - {SUPERUSER_RESERVED_CONNECTIONS} = {available}",
        f"{available} - {servers + direct} = {available - servers - direct}",
    ]
    readme = (REPO_ROOT / "README.md").read_text()
    behind = readme.split("### Behind PgBouncer", 1)[1].split("\n### ", 1)[0]
    where = {
        "README.md (Behind PgBouncer)": (behind, expected),
        "pgbouncer/configmap.yaml": ((POOLER / "configmap.yaml").read_text(), expected),
        "pgbouncer/deployment.yaml": ((POOLER / "deployment.yaml").read_text(), expected[3:4]),
        "config/configmap.yaml": (
            (K8S / "config" / "configmap.yaml").read_text(),
            [expected[0], expected[3]],
        ),
        "hpa.yaml": ((K8S / "hpa.yaml").read_text(), expected[:1]),
    }
    for name, (content, wanted) in where.items():
        stated = _statements(content)
        assert set(wanted) <= set(stated), (name, sorted(set(wanted) - set(stated)), stated)
        assert all(_true(statement) for statement in stated), (name, stated)
