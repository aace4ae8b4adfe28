"""What a deep page costs: page 1 vs page 400 of a 10,000-item owner, by offset and by cursor.

    .venv/bin/python bench/bench_pages.py [--database-url URL] [--rounds 200]

Runs the app in-process on PostgreSQL (database `keel_bench_pages` beside TEST_DATABASE_URL or
--database-url, recreated), seeds one owner with 10,000 items, then times `GET /api/v1/items`
over HTTP (ASGI, no network) and asks PostgreSQL for each page query's execution time and
buffers (EXPLAIN ANALYZE). A benchmark, not a test: it prints figures and asserts nothing.
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import migrations
from app.api.v1.resources import cursors
from app.config import load_settings
from app.main import create_app
from app.models import Item
from app.models.base import utc_now

ITEMS, LIMIT, DEEP_PAGE = 10_000, 25, 400
PASSWORD = "bench pages password 123"


async def fresh_database(url: str) -> str:
    server = make_url(url)
    engine = create_async_engine(server, isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        await connection.execute(text("DROP DATABASE IF EXISTS keel_bench_pages WITH (FORCE)"))
        await connection.execute(text("CREATE DATABASE keel_bench_pages"))
    await engine.dispose()
    return server.set(database="keel_bench_pages").render_as_string(hide_password=False)


async def seed(url: str, owner_id: uuid.UUID) -> None:
    engine = create_async_engine(url)
    start = utc_now()
    rows = [
        {"id": uuid.uuid4(), "owner_id": owner_id, "title": f"item {n}", "version": 1,
         "created_at": start + timedelta(milliseconds=n), "updated_at": start}
        for n in range(ITEMS)
    ]  # fmt: skip
    async with engine.begin() as connection:
        await connection.execute(insert(Item), rows)
        await connection.execute(text("ANALYZE items"))
    await engine.dispose()


async def timed(
    client: httpx.AsyncClient, cases: dict[str, dict[str, object]], rounds: int
) -> dict[str, float]:
    """Median milliseconds per case, the cases interleaved so that drift hits them alike."""
    times: dict[str, list[float]] = {label: [] for label in cases}
    for _ in range(rounds):
        for label, params in cases.items():
            started = time.perf_counter()
            response = await client.get("/api/v1/items", params=params)
            times[label].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.text
    return {label: statistics.median(values) for label, values in times.items()}


async def explain(url: str, sql: str, values: dict[str, object]) -> str:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        plan = (await connection.execute(text(f"EXPLAIN (ANALYZE, BUFFERS) {sql}"), values)).all()
    await engine.dispose()
    lines = [row[0] for row in plan]
    execution = next(line for line in lines if line.startswith("Execution Time"))
    buffers = next(line.strip() for line in lines if "Buffers:" in line)
    return f"{execution.removeprefix('Execution Time: ')}, {buffers}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=os.environ.get("TEST_DATABASE_URL"))
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    if not args.database_url:
        raise SystemExit("a PostgreSQL URL is needed: --database-url or TEST_DATABASE_URL")
    url = await fresh_database(args.database_url)
    await asyncio.to_thread(migrations.upgrade, url)
    settings = load_settings(
        _env_file=None, DATABASE_URL=url, ENVIRONMENT="test", LOG_LEVEL="WARNING",
        RATE_LIMIT_REQUESTS=10**9, SECRET_KEY="bench-pages-secret-key-0123456789-abcdefgh",
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            email = "pages@example.com"
            await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            token = await client.post(
                "/api/v1/auth/token", data={"username": email, "password": PASSWORD}
            )
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            owner = uuid.UUID((await client.get("/api/v1/users/me")).json()["id"])
            await seed(url, owner)
            deep_offset = (DEEP_PAGE - 1) * LIMIT
            page = await client.get("/api/v1/items", params={"limit": LIMIT, "offset": 1})
            assert page.json()["total"] == ITEMS
            # The cursor that page 399 would hand out: the position of its last row.
            row = (
                await client.get("/api/v1/items", params={"limit": 1, "offset": deep_offset - 1})
            ).json()["items"][0]
            position = cursors.Position(
                datetime.fromisoformat(row["created_at"]), uuid.UUID(row["id"])
            )
            key = settings.keys.current.cursor
            deep_cursor = cursors.encode(position, key=key, collection="/api/v1/items")
            first_cursor = page.json()["next_cursor"]
            cases = {
                "page 1, offset": {"limit": LIMIT},
                f"page {DEEP_PAGE}, offset": {"limit": LIMIT, "offset": deep_offset},
                "page 2, cursor": {"limit": LIMIT, "cursor": first_cursor},
                f"page {DEEP_PAGE}, cursor": {"limit": LIMIT, "cursor": deep_cursor},
            }
            print(f"GET /api/v1/items of a {ITEMS:,}-item owner, limit {LIMIT}, median of "
                  f"{args.rounds} requests (in-process, PostgreSQL):")  # fmt: skip
            await timed(client, cases, 5)  # warm up
            for label, median in (await timed(client, cases, args.rounds)).items():
                print(f"  {label:<18} {median:7.2f} ms")
    by_offset = (
        "SELECT * FROM items WHERE owner_id = :owner ORDER BY created_at DESC, id DESC "
        "LIMIT :limit OFFSET :offset"
    )
    by_keyset = (
        "SELECT * FROM items WHERE owner_id = :owner AND (created_at, id) < (:at, :id) "
        "ORDER BY created_at DESC, id DESC LIMIT :limit"
    )
    print("PostgreSQL's own figures for the page query (EXPLAIN ANALYZE):")
    shared = {"owner": owner, "limit": LIMIT + 1}
    print(f"  page 1, offset       {await explain(url, by_offset, {**shared, 'offset': 0})}")
    print(f"  page {DEEP_PAGE}, offset     "
          f"{await explain(url, by_offset, {**shared, 'offset': deep_offset})}")  # fmt: skip
    keyset = {**shared, "at": position.created_at, "id": position.id}
    print(f"  page {DEEP_PAGE}, cursor     {await explain(url, by_keyset, keyset)}")


if __name__ == "__main__":
    asyncio.run(main())
