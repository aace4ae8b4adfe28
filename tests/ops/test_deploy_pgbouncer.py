"""deploy/k8s/pgbouncer: the pooler the app's ConfigMap points at, and its pgbouncer.ini run by
a real PgBouncer in front of the test database with Keel's own engine going through it."""

import configparser
from typing import Any

import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app.config import load_settings
from app.core import database
from tests.conftest import TEST_DATABASE_URL, missing, require_pgbouncer
from tests.ops.test_deploy_files import K8S, manifests
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
