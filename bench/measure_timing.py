"""How long a login or a password-reset request takes for a real account and for an unknown
email. The two should be alike: neither answer may tell which addresses have accounts.

    .venv/bin/python bench/measure_timing.py login [--rounds 30] [--database-url URL]
    .venv/bin/python bench/measure_timing.py reset [--rounds 200] [--database-url URL]
        [--redis-url URL]

Runs the app in-process (real lifespan, real Argon2id, SQLite in a temp dir by default). Known
and unknown requests alternate, so drift and background jobs weigh on both alike. Without a
Redis URL the reset's job runs in this process (as in development); with one it is handed over
to Redis (as in production; no worker runs, so nothing is sent). A benchmark, not a test:
nothing asserts a duration.
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
PASSWORD = "correct horse battery staple"


async def timed(client: httpx.AsyncClient, what: str, email: str) -> float:
    """One request's wall-clock time in ms."""
    started = time.perf_counter()
    if what == "login":
        response = await client.post(
            "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
        )
        assert response.status_code in (200, 401), response.text
    else:
        response = await client.post("/api/v1/auth/password-reset", json={"email": email})
        assert response.status_code == 202, response.text
    return (time.perf_counter() - started) * 1000


def describe(label: str, times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[-1]
    return f"{label:<15} median {statistics.median(times):6.2f} ms   p95 {p95:6.2f} ms"


async def main(what: str, rounds: int, database_url: str | None, redis_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite+aiosqlite:///{tmp}/timing.db"
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
                    "/api/v1/auth/register", json={"email": KNOWN, "password": PASSWORD}
                )
                for _ in range(3):  # warm-up
                    await timed(client, what, KNOWN)
                    await timed(client, what, UNKNOWN)
                known, unknown = [], []
                for _ in range(rounds):
                    known.append(await timed(client, what, KNOWN))
                    unknown.append(await timed(client, what, UNKNOWN))
    endpoint = "/auth/token" if what == "login" else "/auth/password-reset"
    jobs = "handed over to Redis" if redis_url else "run in this process"
    print(f"POST {endpoint}, {rounds} rounds each, alternating (jobs {jobs}):")
    print(describe("known email", known))
    print(describe("unknown email", unknown))
    ratio = statistics.median(unknown) / statistics.median(known)
    print(f"unknown / known median ratio: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["login", "reset"])
    parser.add_argument("--rounds", type=int, help="default: 30 logins or 200 resets")
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args()
    rounds = args.rounds or (30 if args.what == "login" else 200)
    asyncio.run(main(args.what, rounds, args.database_url, args.redis_url))
