"""What the edge middleware costs: /health/live throughput with and without the whole stack.

Runs one Uvicorn process for each variant (the same app; `bare_app` below clears its middleware),
loads it with `wrk`, alternating the variants over several rounds, and prints the ratio of the
medians and the spread of the per-round ratios. The budget (issue 5) is a ratio of at least 0.75.

    .venv/bin/python scripts/bench_middleware.py [--rounds 7] [--seconds 5] [--port 18150]

Needs `wrk` (`apt-get install wrk`). Logs go to /dev/null: the access line's formatting is
measured, not the terminal.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 0.75
# Server and load generator on separate cores when possible: steadier figures on a small box.
_PIN = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
PIN_SERVER = ["taskset", "-c", "0"] if _PIN else []
PIN_LOAD = ["taskset", "-c", "1"] if _PIN else []


def bare_app() -> object:
    """The same application with no user middleware (the baseline)."""
    from app.config import get_settings
    from app.main import create_app

    app = create_app(get_settings())
    app.user_middleware.clear()
    return app


TARGETS = {
    "bare": "scripts.bench_middleware:bare_app",
    "full": "app.main:app",  # the edge layers, the rate limiter and the metrics
}


def serve(port: int, variant: str, workdir: str) -> subprocess.Popen[bytes]:
    target = TARGETS[variant]
    command = [*PIN_SERVER, sys.executable, "-m", "uvicorn", target, "--port", str(port)]
    command.append("--no-access-log")
    command += ["--no-server-header", "--log-level", "warning"]
    if variant != "full":
        command.append("--factory")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{workdir}/bench.db",
        "LOG_FORMAT": "json",
        "RATE_LIMIT_REQUESTS": "1000000000",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=1):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start")


def wrk(port: int, seconds: int) -> float:
    output = subprocess.run(
        [*PIN_LOAD, "wrk", "-t1", "-c32", f"-d{seconds}s", f"http://127.0.0.1:{port}/health/live"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return float(match.group(1))


def measure(port: int, variant: str, seconds: int, workdir: str) -> float:
    process = serve(port, variant, workdir)
    try:
        wrk(port, 1)  # warm-up
        return wrk(port, seconds)
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)  # rounds differ by about 2 % here
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--port", type=int, default=18150)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    rates: dict[str, list[float]] = {variant: [] for variant in TARGETS}
    with tempfile.TemporaryDirectory() as workdir:
        for round_number in range(1, args.rounds + 1):
            for variant, measured in rates.items():
                measured.append(measure(args.port, variant, args.seconds, workdir))
            figures = ", ".join(f"{variant} {rates[variant][-1]:.0f}" for variant in TARGETS)
            print(f"round {round_number} (req/s): {figures}")
    bare = statistics.median(rates["bare"])
    full = statistics.median(rates["full"])
    ratio = full / bare
    per_round = [f / b for f, b in zip(rates["full"], rates["bare"], strict=True)]
    print(f"/health/live median: bare {bare:.0f} req/s, whole stack {full:.0f} req/s")
    print(
        f"ratio {ratio:.3f} (the middleware costs {1 - ratio:.1%} of throughput; "
        f"budget: ratio >= {BUDGET}); rounds ranged {min(per_round):.3f}-{max(per_round):.3f}"
    )
    return 0 if ratio >= BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
