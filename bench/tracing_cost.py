"""In-process CPU per request of the list and /health/live, tracing off and on (CONTRACT.md 12).

    .venv/bin/python bench/tracing_cost.py [--rounds 3 --requests 3000] [--base /tmp/keel-main]

No server and no network between client and app: requests go through httpx's ASGI transport
to `create_app(settings)` on PostgreSQL and Redis, one at a time, and the figure is the
process's CPU time (client, app and the exporter's thread) per request. Each variant runs in its
own process, interleaved round by round; the difference between variants is the cost of
tracing. With tracing on, spans go over OTLP/HTTP to a loopback receiver in another process
(whose CPU is not counted). `--base` adds the tree at another path (e.g. main before the change)
with tracing off: the cost of the code being there at all. Not `make bench`: that measures a
Gunicorn server under wrk on a quiet machine; these are a single process's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VARIANTS = {
    "off": {},
    "on, all sampled": {"OTEL_TRACES_SAMPLER": "parentbased_always_on"},
    "on, 10% sampled": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
    "on, 0% sampled": {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0",
    },
}
ROUTES = {"list": "/api/v1/items?limit=20", "live": "/health/live"}


def receive(port_file: str) -> None:
    """A loopback OTLP sink: answers 200 to every POST, reads and drops the body."""

    class Sink(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


async def measure(requests: int, endpoint: str | None) -> dict[str, float]:
    """CPU µs per request of each route, in this process, with this tree's `app`."""
    sys.path.insert(0, os.getcwd())
    import httpx

    from app.config import load_settings
    from app.main import create_app

    overrides = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if endpoint else {}
    settings = load_settings(
        _env_file=None,
        ENVIRONMENT="test",
        DATABASE_URL=os.environ["BENCH_DATABASE_URL"],
        REDIS_URL=os.environ["BENCH_REDIS_URL"],
        SECRET_KEY="bench-secret-key-0123456789-abcdefghijklmnop",
        RATE_LIMIT_REQUESTS=10**9,
        LOG_FORMAT="json",
        **overrides,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            token = await _token(client)
            figures = {}
            for route, path in ROUTES.items():
                headers = {"Authorization": f"Bearer {token}"} if route == "list" else {}
                for _ in range(200):  # warm up: caches, pools, first exports
                    await client.get(path, headers=headers)
                started = time.process_time()
                for _ in range(requests):
                    answer = await client.get(path, headers=headers)
                    assert answer.status_code == 200, answer.text
                figures[route] = (time.process_time() - started) * 1e6 / requests
    return figures


async def _token(client: object) -> str:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    account = {"email": "bench@example.com", "password": "bench password 123"}
    await client.post("/api/v1/auth/register", json=account)
    form = {"username": account["email"], "password": account["password"]}
    token = str((await client.post("/api/v1/auth/token", data=form)).json()["access_token"])
    listed = await client.get("/api/v1/items", headers={"Authorization": f"Bearer {token}"})
    for n in range(20 - len(listed.json()["items"])):
        headers = {"Authorization": f"Bearer {token}"}
        await client.post("/api/v1/items", json={"title": f"item {n}"}, headers=headers)
    return token


def run_variant(tree: Path, env: dict[str, str], requests: int, endpoint: str | None) -> dict:
    argv = [sys.executable, __file__, "--child", str(requests)]
    if endpoint:
        argv += ["--endpoint", endpoint]
    done = subprocess.run(
        argv,
        cwd=tree,
        env=os.environ | env,
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # the access lines
    )
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--base", type=Path, help="another tree, measured with tracing off")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args.endpoint))))
        return
    for name in ("BENCH_DATABASE_URL", "BENCH_REDIS_URL"):
        if name not in os.environ:
            raise SystemExit(f"set {name} (a PostgreSQL database and a Redis db to use)")
    port_file = Path(f"/tmp/keel-otlp-sink-{os.getpid()}")  # noqa: S108
    sink = subprocess.Popen([sys.executable, __file__, "--sink", str(port_file)])
    while not port_file.exists() or not port_file.read_text():
        time.sleep(0.05)
    endpoint = f"http://127.0.0.1:{port_file.read_text()}"
    here = Path(__file__).resolve().parents[1]
    runs: list[tuple[str, Path, dict[str, str], str | None]] = [
        (name, here, env, endpoint if env else None) for name, env in VARIANTS.items()
    ]
    if args.base:
        runs.insert(0, ("base (off)", args.base.resolve(), {}, None))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, *_ in runs}
    try:
        for round_number in range(args.rounds):
            order = runs if round_number % 2 == 0 else list(reversed(runs))
            for name, tree, env, url in order:
                results[name].append(run_variant(tree, env, args.requests, url))
                print(f"round {round_number + 1} {name}: {results[name][-1]}", flush=True)
    finally:
        sink.terminate()
        port_file.unlink(missing_ok=True)
    print()
    for route in ROUTES:
        for name, rows in results.items():
            median = statistics.median(row[route] for row in rows)
            spread = ", ".join(f"{row[route]:.0f}" for row in rows)
            print(f"{route:<5} {name:<18} {median:7.0f} µs CPU/request (rounds: {spread})")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sink":
        receive(sys.argv[2])
    else:
        main()
