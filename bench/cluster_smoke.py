"""Scale-out proof on one machine: two Keel instances behind nginx, sharing PostgreSQL and Redis.

Run it with `bench/cluster-smoke` (needs nginx, PostgreSQL and Redis; not part of CI). It shows:
1. one rate limit across both instances (Redis), not one per process;
2. a logout on one instance is honoured by the other;
3. restarting one instance under load loses no request.
"""

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DATABASE_URL = os.environ.get(
    "SMOKE_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test_ops"
)
REDIS_URL = os.environ.get("SMOKE_REDIS_URL", "redis://127.0.0.1:6379/2")
NGINX_PORT, PORT_A, PORT_B = 18280, 18281, 18282
RATE_LIMIT = 30
API = "/api/v1"
CONCURRENCY = 16

NGINX_CONF = """
daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    upstream keel {{
        server 127.0.0.1:{a};
        server 127.0.0.1:{b};
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://keel;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # A refused connection (instance restarting) is retried on the other instance.
            proxy_next_upstream error timeout;
            add_header X-Upstream $upstream_addr always;
        }}
    }}
}}
"""


@dataclass
class Cluster:
    work: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_instance(self, name: str, port: int) -> None:
        env = self.env | {
            "BIND": f"127.0.0.1:{port}",
            "PROMETHEUS_MULTIPROC_DIR": str(self.work / f"metrics-{name}"),
        }
        with (self.work / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(  # fixed argv
                [str(ROOT / ".venv/bin/gunicorn"), "-c", "gunicorn.conf.py", "app.main:app"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=log,
            )

    def stop(self, name: str) -> int:
        process = self.processes.pop(name)
        process.send_signal(signal.SIGTERM if name != "nginx" else signal.SIGQUIT)
        return process.wait(timeout=60)

    def stop_all(self) -> None:
        for name in list(self.processes):
            self.stop(name)


def wait_ready(url: str, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"not ready: {url}")


def fake_client_ip() -> str:
    """A fresh client address per run (nginx appends the real peer): old counters don't count."""
    return f"198.51.100.{secrets.randbelow(250) + 1}"


def shared_rate_limit(base: str) -> bool:
    print(f"\n1. Rate limit shared across instances (RATE_LIMIT_REQUESTS={RATE_LIMIT})")
    headers = {"X-Forwarded-For": fake_client_ip()}
    statuses: list[int] = []
    upstreams: Counter[str] = Counter()
    limit_header = None
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        for _ in range(RATE_LIMIT * 3):
            response = client.get(f"{API}/users/me")
            statuses.append(response.status_code)
            upstreams[response.headers.get("x-upstream", "?")] += 1
            if response.status_code == 429:
                limit_header = response.headers.get("x-ratelimit-limit")
    passed = sum(status != 429 for status in statuses)
    print(f"   {len(statuses)} requests via nginx, served by {dict(upstreams)}")
    print(f"   statuses: {dict(Counter(statuses))}; X-RateLimit-Limit on 429: {limit_header}")
    if 429 not in statuses:
        print("   SKIPPED: no 429 at all (rate limiting not in this build?)")
        return True
    ok = passed == RATE_LIMIT and len(upstreams) == 2
    print(f"   {passed} let through before 429 (one shared limit: {RATE_LIMIT}) -> {verdict(ok)}")
    return ok


def logout_across_instances() -> bool:
    print("\n2. Logout on instance A is honoured by instance B")
    a, b = f"http://127.0.0.1:{PORT_A}", f"http://127.0.0.1:{PORT_B}"
    email = f"smoke-{secrets.token_hex(6)}@example.com"
    password = f"Smoke-{secrets.token_urlsafe(12)}-9!"
    register = httpx.post(f"{a}{API}/auth/register", json={"email": email, "password": password})
    if register.status_code == 404:
        print("   SKIPPED: no auth endpoints in this build (404)")
        return True
    token = httpx.post(f"{a}{API}/auth/token", data={"username": email, "password": password})
    print(f"   register on A: {register.status_code}, token on A: {token.status_code}")
    if token.status_code != 200:
        print(f"   FAILED: {token.text}")
        return False
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    before = httpx.get(f"{b}{API}/users/me", headers=bearer).status_code
    logout = httpx.post(f"{a}{API}/auth/logout", headers=bearer).status_code
    after = httpx.get(f"{b}{API}/users/me", headers=bearer).status_code
    ok = (before, logout, after) == (200, 204, 401)
    print(f"   /users/me on B: {before}; logout on A: {logout}; /users/me on B: {after}")
    print(f"   -> {verdict(ok)}")
    return ok


async def load(base: str, stop: asyncio.Event, results: Counter[str]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while not stop.is_set():
            try:
                response = await client.get("/health/live")
                results[str(response.status_code)] += 1
                results[f"via {response.headers.get('x-upstream', '?')}"] += 1
            except httpx.HTTPError as error:
                results[f"error {type(error).__name__}"] += 1


async def restart_under_load(cluster: Cluster, base: str) -> bool:
    print(f"\n3. Restart instance A under load ({CONCURRENCY} concurrent clients via nginx)")
    stop, results = asyncio.Event(), Counter[str]()
    clients = [asyncio.create_task(load(base, stop, results)) for _ in range(CONCURRENCY)]
    await asyncio.sleep(1)
    started = time.monotonic()
    exit_code = await asyncio.to_thread(cluster.stop, "a")
    stopped = time.monotonic() - started
    cluster.start_instance("a", PORT_A)
    await asyncio.to_thread(wait_ready, f"http://127.0.0.1:{PORT_A}/health/ready")
    back = time.monotonic() - started
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(*clients)
    total = sum(count for key, count in results.items() if key.isdigit() or key.startswith("error"))
    failures = total - results["200"]
    print(f"   A stopped (SIGTERM) in {stopped:.2f} s, exit code {exit_code}")
    print(f"   A ready again {back:.2f} s after the SIGTERM")
    print(f"   {total} requests: {dict(sorted(results.items()))}")
    ok = failures == 0 and exit_code == 0
    print(f"   {failures} lost or failed -> {verdict(ok)}")
    return ok


def verdict(ok: bool) -> str:
    return "OK" if ok else "FAILED"


def main() -> int:
    if shutil.which("nginx") is None:
        raise SystemExit("nginx is required: apt-get install -y nginx")
    work = Path(tempfile.mkdtemp(prefix="keel-cluster-"))
    work.chmod(0o755)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (work / sub).mkdir(mode=0o777)
    env = {key: value for key, value in os.environ.items() if key in {"PATH", "HOME", "LANG"}}
    env |= {
        "ENVIRONMENT": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),  # one key: a token from A is valid on B
        "DATABASE_URL": DATABASE_URL,
        "REDIS_URL": REDIS_URL,
        "WORKERS": "2",
        "TRUSTED_PROXIES": "127.0.0.1/32",
        "RATE_LIMIT_REQUESTS": str(RATE_LIMIT),
        "RATE_LIMIT_WINDOW_SECONDS": "60",
        "LOG_LEVEL": "WARNING",
        # Production requires them; nothing listens there (no test here sends email).
        "SMTP_HOST": "127.0.0.1",
        "EMAIL_FROM": "Keel <no-reply@example.com>",
        "FRONTEND_URL": "https://app.example.com",
    }
    cluster = Cluster(work, env)
    print(f"work dir {work}; database {DATABASE_URL}; redis {REDIS_URL}")
    subprocess.run(  # fixed argv
        [str(ROOT / ".venv/bin/python"), "-m", "app", "migrate"], cwd=ROOT, env=env, check=True
    )
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(work=work, a=PORT_A, b=PORT_B, port=NGINX_PORT))
    try:
        cluster.start_instance("a", PORT_A)
        cluster.start_instance("b", PORT_B)
        nginx = ["nginx", "-p", str(work), "-c", str(conf)]
        cluster.processes["nginx"] = subprocess.Popen(nginx)  # nginx from PATH
        for port in (PORT_A, PORT_B, NGINX_PORT):
            wait_ready(f"http://127.0.0.1:{port}/health/ready")
        base = f"http://127.0.0.1:{NGINX_PORT}"
        print(f"instances on :{PORT_A} and :{PORT_B} (2 workers each), nginx on :{NGINX_PORT}")
        results = [
            shared_rate_limit(base),
            logout_across_instances(),
            asyncio.run(restart_under_load(cluster, base)),
        ]
    finally:
        cluster.stop_all()
    print(f"\n{'all checks passed' if all(results) else 'SOME CHECKS FAILED'} (logs in {work})")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
