"""How long `POST /auth/password-reset` takes for a real account and for an unknown address
(they should be alike: the answer must not tell which addresses have accounts).

    .venv/bin/python scripts/measure_reset.py [--rounds 200] [--database-url URL] [--redis-url URL]

Runs the app in-process (real lifespan, SQLite in a temp dir by default); known and unknown
requests alternate, so drift and the background jobs weigh on both alike. Without a Redis URL
the jobs run in this process (as in development); with one they are handed over to Redis (as
in production; no worker runs, so nothing is sent). A benchmark, not a test.
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import migrations
from app.config import load_settings
from app.main import create_app

KNOWN = "bench@example.com"
UNKNOWN = "nobody@example.com"


async def timed_reset(client: httpx.AsyncClient, email: str) -> float:
    started = time.perf_counter()
    response = await client.post("/api/v1/auth/password-reset", json={"email": email})
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 202, response.text
    return elapsed


def describe(label: str, times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[-1]
    return f"{label:<15} median {statistics.median(times):6.2f} ms   p95 {p95:6.2f} ms"


async def main(rounds: int, database_url: str | None, redis_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite+aiosqlite:///{tmp}/reset.db"
        await asyncio.to_thread(migrations.upgrade, url)
        settings = load_settings(
            _env_file=None,
            DATABASE_URL=url,
            REDIS_URL=redis_url,
            AUTH_RATE_LIMIT_REQUESTS=1_000_000,
            LOG_LEVEL="WARNING",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://keel") as client:
                await client.post(
                    "/api/v1/auth/register", json={"email": KNOWN, "password": "p" * 16}
                )
                for _ in range(5):  # warm-up
                    await timed_reset(client, KNOWN)
                    await timed_reset(client, UNKNOWN)
                known, unknown = [], []
                for _ in range(rounds):
                    known.append(await timed_reset(client, KNOWN))
                    unknown.append(await timed_reset(client, UNKNOWN))
    jobs = "handed over to Redis" if redis_url else "run in this process"
    print(f"POST /auth/password-reset, {rounds} rounds each, alternating (jobs {jobs}):")
    print(describe("known email", known))
    print(describe("unknown email", unknown))
    ratio = statistics.median(unknown) / statistics.median(known)
    print(f"unknown / known median ratio: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.database_url, args.redis_url))
