"""How long one login takes, for a real account and for an unknown email (should be alike).

    .venv/bin/python scripts/measure_login.py [--rounds 30] [--database-url URL]

Runs the app in-process (real lifespan, real Argon2id, SQLite in a temp dir by default) and
prints wall-clock figures per login. A benchmark, not a test: nothing asserts a duration.
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

PASSWORD = "correct horse battery staple"


async def timed_logins(client: httpx.AsyncClient, email: str, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = await client.post(
            "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
        )
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code in (200, 401), response.text
    return times


def describe(label: str, times: list[float]) -> str:
    p95 = statistics.quantiles(times, n=20)[-1]
    return f"{label:<15} median {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms"


async def main(rounds: int, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite+aiosqlite:///{tmp}/login.db"
        await asyncio.to_thread(migrations.upgrade, url)
        settings = load_settings(
            _env_file=None,
            DATABASE_URL=url,
            AUTH_RATE_LIMIT_REQUESTS=1_000_000,
            LOG_LEVEL="WARNING",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://keel") as client:
                await client.post(
                    "/api/v1/auth/register",
                    json={"email": "bench@example.com", "password": PASSWORD},
                )
                await timed_logins(client, "bench@example.com", 3)  # warm-up
                known = await timed_logins(client, "bench@example.com", rounds)
                unknown = await timed_logins(client, "nobody@example.com", rounds)
    print(f"one login, {rounds} rounds each (Argon2id m=19 MiB, t=2, p=1; in-process ASGI):")
    print(describe("known email", known))
    print(describe("unknown email", unknown))
    ratio = statistics.median(unknown) / statistics.median(known)
    print(f"unknown / known median ratio: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.database_url))
