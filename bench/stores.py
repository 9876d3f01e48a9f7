"""The stores side by side: SQLite, PostgreSQL and Redis, one and two processes.

Three measurements, one run, printed as Markdown tables:

1. ledger consumes per second through the library (fresh token ids, 16 at a
   time per process), in one process and in two processes sharing the store;
2. ``POST /a/{token}`` requests per second (fresh links, 16 keep-alive
   connections) of ``actionlinks serve`` with one and two worker processes;
3. the cost of one consume (one at a time) with 1,000 and with 1,000,000 live
   ledger entries: the ledger must stay flat (goal: within 1.2 times).

Needs PostgreSQL (``--postgres``, default 127.0.0.1:5432 as ``postgres``: a
database is created and dropped) and ``redis-server`` (one is started on a
free port and stopped). Run with ``.venv/bin/python bench/stores.py`` from the
repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Self

import asyncpg
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from service import _mint, free_port, measure_load, post_request
from workers import serving

from actionlinks.clock import SystemClock
from actionlinks.stores import store_from_url
from actionlinks.stores.rows import micros

SCRIPT = Path(sys.executable).with_name("actionlinks")
LIVE = timedelta(days=1)
TASKS = 16


class Backends:
    """A PostgreSQL database and a redis-server of the benchmark's own."""

    def __init__(self, postgres: str, home: Path):
        self.admin = f"{postgres}/postgres"
        self.name = f"actionlinks_bench_{secrets.token_hex(4)}"
        self.postgres = f"{postgres}/{self.name}"
        self.sqlite = f"sqlite:///{home / 'bench.db'}"
        self.redis_port = free_port()
        self.redis = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis_process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit("redis-server is needed (Debian package redis-server)")
        self.redis_process = subprocess.Popen(
            [
                *(executable, "--port", str(self.redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.redis)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        client.close()
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.redis_process is not None:
            self.redis_process.terminate()
            self.redis_process.wait()
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    async def _admin(self, sql: str) -> None:
        connection = await asyncpg.connect(self.admin)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def ledger_kinds(self) -> dict[str, tuple[str, str | None]]:
        """Name: (database URL, ledger URL)."""
        return {
            "SQLite": (self.sqlite, None),
            "PostgreSQL": (self.postgres, None),
            "Redis": ("memory://", self.redis),
        }

    def service_kinds(self) -> dict[str, dict[str, str]]:
        """Name: the service's environment."""
        return {
            "SQLite": {"ACTIONLINKS_DATABASE_URL": self.sqlite},
            "PostgreSQL": {"ACTIONLINKS_DATABASE_URL": self.postgres},
            "PostgreSQL + Redis ledger": {
                "ACTIONLINKS_DATABASE_URL": self.postgres,
                "ACTIONLINKS_LEDGER_URL": self.redis,
            },
        }


async def _open(database: str, ledger: str | None):
    store = store_from_url(
        database, clock=SystemClock(), ledger_url=ledger, namespace="bench"
    )
    await store.connect()
    await store.migrate()
    return store


async def _consume_rate(database: str, ledger: str | None, seconds: float) -> float:
    store = await _open(database, ledger)
    expires = SystemClock().now() + LIVE
    prefix = secrets.token_hex(4)
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker(number: int) -> None:
        nonlocal done
        count = 0
        while time.perf_counter() < stop_at:
            token_id = f"{prefix}-{number}-{count}"
            if not await store.ledger.consume(token_id, expires_at=expires):
                raise RuntimeError("a fresh id was refused")
            count += 1
        done += count

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(n) for n in range(TASKS)))
    finally:
        await store.aclose()
    return done / (time.perf_counter() - started)


def _consume_in_process(database, ledger, seconds, out) -> None:
    out.put(asyncio.run(_consume_rate(database, ledger, seconds)))


def consumes_per_second(
    database: str, ledger: str | None, seconds: float, processes: int
) -> float:
    asyncio.run(_consume_rate(database, ledger, 0.2))  # migrated, warm
    queue: multiprocessing.Queue[float] = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(
            target=_consume_in_process, args=(database, ledger, seconds, queue)
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    rates = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(rates)


async def _fill(kind: str, database: str, ledger: str | None, count: int) -> None:
    """Add ``count`` live entries, as fast as each backend takes them."""
    now = SystemClock().now()
    at, until = micros(now), micros(now + LIVE)
    prefix = f"fill-{secrets.token_hex(4)}"
    if kind == "PostgreSQL":
        connection = await asyncpg.connect(database)
        try:
            await connection.copy_records_to_table(
                "ledger_entries",
                records=((f"{prefix}-{n}", "used", at, until) for n in range(count)),
                columns=("token_id", "state", "at_us", "expires_us"),
            )
            await connection.execute("ANALYZE ledger_entries")
        finally:
            await connection.close()
    elif kind == "SQLite":
        import sqlite3

        connection = sqlite3.connect(database.removeprefix("sqlite:///"))
        with connection:
            connection.executemany(
                "INSERT INTO ledger_entries (token_id, state, at_us, expires_us) "
                "VALUES (?, 'used', ?, ?)",
                ((f"{prefix}-{n}", at, until) for n in range(count)),
            )
        connection.close()
    else:
        # Through the ledger itself, pipelined: the keys it makes, with lifetimes.
        store = await _open(database, ledger)
        expires = now + LIVE
        try:
            for start in range(0, count, 2000):
                await asyncio.gather(
                    *(
                        store.ledger.consume(f"{prefix}-{n}", expires_at=expires)
                        for n in range(start, min(count, start + 2000))
                    )
                )
        finally:
            await store.aclose()


async def _consume_cost(database: str, ledger: str | None, count: int) -> float:
    """Microseconds per consume, one at a time (the latency of one use)."""
    store = await _open(database, ledger)
    expires = SystemClock().now() + LIVE
    prefix = secrets.token_hex(4)
    try:
        for n in range(200):  # warm
            await store.ledger.consume(f"w{prefix}-{n}", expires_at=expires)
        started = time.perf_counter()
        for n in range(count):
            await store.ledger.consume(f"{prefix}-{n}", expires_at=expires)
        return (time.perf_counter() - started) / count * 1e6
    finally:
        await store.aclose()


def live_entries(kind: str, database: str, ledger: str | None, small: int, large: int):
    asyncio.run(_fill(kind, database, ledger, small))
    at_small = asyncio.run(_consume_cost(database, ledger, 3000))
    asyncio.run(_fill(kind, database, ledger, large - small))
    at_large = asyncio.run(_consume_cost(database, ledger, 3000))
    return at_small, at_large


def posts_per_second(env: dict[str, str], workers: int, count: int) -> float:
    with serving(workers, env) as (port, service_env):
        links = asyncio.run(_mint(service_env, count))
        requests = [
            post_request(f"/a/{token}", f"nonce={nonce}") for token, nonce in links
        ]
        rate, ok, done = measure_load(port, requests, 0, TASKS)
        if ok != done:
            raise RuntimeError(f"{done - ok} of {done} POSTs failed")
        return float(rate)


def flat_ledgers(postgres: str, large: int) -> dict[str, tuple[float, float]]:
    """µs per consume at 1,000 and at ``large`` live entries, per ledger."""
    flat = {}
    for name in ("SQLite", "PostgreSQL", "Redis"):
        with (
            tempfile.TemporaryDirectory() as scratch,
            Backends(postgres, Path(scratch)) as backends,
        ):
            database, ledger = backends.ledger_kinds()[name]
            asyncio.run(_consume_cost(database, ledger, 10))  # the schema
            flat[name] = live_entries(name, database, ledger, 1000, large)
    return flat


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--posts", type=int, default=3000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as scratch,
        Backends(args.postgres, Path(scratch)) as backends,
    ):
        consumes = {
            name: [
                consumes_per_second(database, ledger, args.seconds, processes)
                for processes in (1, 2)
            ]
            for name, (database, ledger) in backends.ledger_kinds().items()
        }
        posts = {
            name: [posts_per_second(env, workers, args.posts) for workers in (1, 2)]
            for name, env in backends.service_kinds().items()
        }
    flat = flat_ledgers(args.postgres, args.large)

    print(
        f"Python {sys.version.split()[0]}; {os.cpu_count()} cores; one run; "
        f"PostgreSQL and Redis on 127.0.0.1\n"
    )
    print("| ledger | consumes/s, 1 process | 2 processes | × one |")
    print("|---|---:|---:|---:|")
    for name, (one, two) in consumes.items():
        print(f"| {name} | {one:,.0f} | {two:,.0f} | {two / one:.2f}× |")
    print(
        "\n| store | POST /a/{token} req/s, 1 worker | 2 workers | × one |\n"
        "|---|---:|---:|---:|"
    )
    for name, (one, two) in posts.items():
        print(f"| {name} | {one:,.0f} | {two:,.0f} | {two / one:.2f}× |")
    print(
        f"\n| ledger | µs per consume, 1,000 live | {args.large:,} live | ratio | "
        "goal ≤ 1.2× |\n|---|---:|---:|---:|---|"
    )
    for name, (small, large) in flat.items():
        verdict = "PASS" if large / small <= 1.2 else "MISS"
        print(
            f"| {name} | {small:,.0f} | {large:,.0f} | {large / small:.2f}× | "
            f"{verdict} |"
        )


if __name__ == "__main__":
    main()
