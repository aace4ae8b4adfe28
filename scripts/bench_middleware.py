"""What the edge middleware costs: /health/live throughput with and without the whole stack.

Three Uvicorn processes serve the same app, started once and loaded in turn with `wrk`:

- `bare`: no user middleware (the baseline);
- `headers`: a single layer that adds the response headers CONTRACT.md section 5 asks for, with
  fixed values, and does nothing else: the share of the cost that is Uvicorn writing them;
- `full`: `app.main:app`, the whole stack (edge, rate limiter, metrics, access line).

Samples are short and interleaved (bare, headers, full, then the other way round), and every
ratio is taken within one pass: a machine whose speed drifts over minutes (a shared VM) moves
all variants of a pass together. The budget (issue 5) is a median ratio of at least 0.75.

    .venv/bin/python scripts/bench_middleware.py [--passes 15] [--seconds 2]

Needs `wrk` (`apt-get install wrk`). Logs go to /dev/null: the access line's formatting is
measured, not the terminal.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchlib.processes import ProcessGroups, Server, free_port, wait_http_ok
from benchlib.wrk import parse_wrk_output
from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 0.75
# Server and load generator on separate cores when possible: steadier figures on a small box.
_PIN = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
PIN_SERVER = ["taskset", "-c", "0"] if _PIN else []
PIN_LOAD = ["taskset", "-c", "1"] if _PIN else []


def bare_app() -> FastAPI:
    """The same application with no user middleware (the baseline)."""
    from app.config import get_settings
    from app.main import create_app

    app = create_app(get_settings())
    app.user_middleware.clear()
    return app


class _ContractHeaders:
    """Adds the contract's response headers, fixed, to every answer: nothing else."""

    def __init__(self, app: ASGIApp, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *self.headers]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def headers_app() -> FastAPI:
    """The baseline plus the headers every answer carries (CONTRACT.md section 5)."""
    from app.config import get_settings
    from app.core.headers import API_CSP, security_headers

    app = bare_app()
    settings = get_settings()
    headers = [
        *security_headers(API_CSP, settings.HSTS_SECONDS),
        (b"x-request-id", b"3f2b8c1e-6d0a-4b7e-9c55-1a2b3c4d5e6f"),
        (b"x-response-time", b"0.12ms"),
    ]
    app.user_middleware.append(Middleware(_ContractHeaders, headers=headers))
    return app


TARGETS = {
    "bare": ("scripts.bench_middleware:bare_app", True),
    "headers": ("scripts.bench_middleware:headers_app", True),
    "full": ("app.main:app", False),  # the edge layers, the rate limiter and the metrics
}


def serve(servers: ProcessGroups, variant: str, port: int, workdir: Path) -> Server:
    target, factory = TARGETS[variant]
    command = [*PIN_SERVER, sys.executable, "-m", "uvicorn", target, "--port", str(port)]
    command += ["--no-access-log", "--no-server-header", "--log-level", "warning"]
    if factory:
        command.append("--factory")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/{variant}.db",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",  # the access line is part of the stack
        "RATE_LIMIT_REQUESTS": "1000000000",
        # The servers import this module (bare_app, headers_app), which imports benchlib.
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "scripts")]),
    }
    env.pop("REDIS_URL", None)
    return servers.spawn(
        variant,
        command,
        env=env,
        cwd=ROOT,
        log_path=Path(os.devnull),  # the access lines are rendered and written, not stored
        base_url=f"http://127.0.0.1:{port}",
    )


def wrk(port: int, seconds: int) -> float:
    """Requests per second of one run; a run with any failed or non-2xx answer is refused."""
    output = subprocess.run(
        [*PIN_LOAD, "wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/health/live"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = parse_wrk_output(output)
    if result.errors:
        raise SystemExit(f"{result.errors} failed or non-2xx answers on port {port}:\n{output}")
    return result.rps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=15)
    parser.add_argument("--seconds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    ports: dict[str, int] = {}
    for variant in TARGETS:
        ports[variant] = free_port(taken=ports.values())
    rates: dict[str, list[float]] = {variant: [] for variant in TARGETS}
    servers = ProcessGroups()
    with tempfile.TemporaryDirectory() as workdir:
        try:
            for variant, port in ports.items():
                wait_http_ok(serve(servers, variant, port, Path(workdir)), "/health/live")
                wrk(port, 2)  # warm-up
            for number in range(args.passes):
                order = list(TARGETS) if number % 2 == 0 else list(reversed(TARGETS))
                for variant in order:
                    rates[variant].append(wrk(ports[variant], args.seconds))
                figures = ", ".join(f"{variant} {rates[variant][-1]:.0f}" for variant in TARGETS)
                print(f"pass {number + 1} (req/s): {figures}", flush=True)
        finally:
            servers.stop_all()
    ratios = {}
    for variant in ("headers", "full"):
        per_pass = [v / b for v, b in zip(rates[variant], rates["bare"], strict=True)]
        low, ratio, high = statistics.quantiles(per_pass, n=4)
        ratios[variant] = ratio
        print(
            f"{variant}: median {statistics.median(rates[variant]):.0f} req/s against bare "
            f"{statistics.median(rates['bare']):.0f}; ratio {ratio:.3f} "
            f"(middle half of the passes {low:.3f}-{high:.3f})"
        )
    full = ratios["full"]
    print(
        f"the whole stack costs {1 - full:.1%} of /health/live throughput, the contract's headers "
        f"alone {1 - ratios['headers']:.1%} (budget: ratio >= {BUDGET})"
    )
    return 0 if full >= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
