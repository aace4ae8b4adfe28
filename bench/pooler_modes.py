"""Prepared-statement modes through PgBouncer in transaction mode, measured: which fail.

    .venv/bin/python bench/pooler_modes.py [--database-url URL] [--requests 400]

Starts Debian's PgBouncer (tests/pgbouncer.py, 4 server connections) in front of the database and
runs the same two-statement unit of work from 32 concurrent clients in each mode, inside a
transaction and in autocommit (Keel's reads), then counts the prepared statements left on a
server connection. The figures behind README's "Behind PgBouncer" and DATABASE_POOLER.
"""

import argparse
import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pgbouncer import ThrowawayPgBouncer

MODES: dict[str, dict[str, Any]] = {
    "caches on (asyncpg's default)": {},
    "caches off, uuid names (SQLAlchemy's recipe)": {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
    },
    "caches off, unnamed (DATABASE_POOLER=transaction)": {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
    },
}


async def unit_of_work(engine: AsyncEngine, n: int, failures: Counter[str]) -> None:
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT CAST(:n AS int) + 1"), {"n": n})
            await connection.execute(
                text("SELECT count(*) FROM pg_class WHERE relpages > :p"), {"p": n % 3}
            )
            await connection.commit()
    except Exception as error:  # counted by kind: the point is which modes fail
        failures[type(error).__name__] += 1


async def measure(url: str, args: dict[str, Any], autocommit: bool, requests: int) -> Counter[str]:
    engine = create_async_engine(url, pool_size=32, max_overflow=0, connect_args=args)
    if autocommit:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    failures: Counter[str] = Counter()
    gate = asyncio.Semaphore(32)

    async def one(n: int) -> None:
        async with gate:
            await unit_of_work(engine, n, failures)

    await asyncio.gather(*(one(n) for n in range(requests)))
    await engine.dispose()
    return failures


async def main(database_url: str, requests: int) -> None:
    with ThrowawayPgBouncer(database_url) as pooler:
        for mode, args in MODES.items():
            for autocommit in (False, True):
                failures = await measure(pooler.url(), args, autocommit, requests)
                kind = "autocommit " if autocommit else "transaction"
                failed = sum(failures.values())
                print(f"{mode:<50} {kind}  failed {failed:>4}/{requests} {dict(failures)}")
        plain = pooler.url().replace("+asyncpg", "")
        connection = await asyncpg.connect(plain, statement_cache_size=0)
        try:
            left = await connection.fetchval("SELECT count(*) FROM pg_prepared_statements")
        finally:
            await connection.close()
        print(f"prepared statements left on one server connection: {left}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test_pgb"
    )
    parser.add_argument("--requests", type=int, default=400)
    options = parser.parse_args()
    asyncio.run(main(options.database_url, options.requests))
