"""The PostgreSQL store proves every contract on a real server, unchanged.

Each test gets a database of its own on 127.0.0.1:5432 (trust auth, role
postgres), created before and dropped after.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import secrets
from datetime import timedelta

import anyio
import asyncpg
import pytest
from contracts.ledger import LedgerContract
from contracts.links import LinkStoreContract
from contracts.outbox import EndpointStoreContract, OutboxContract, message
from pgserver import fresh_database

from actionlinks.errors import (
    ConfigurationError,
    LedgerUnavailableError,
    ServiceClosedError,
)
from actionlinks.stores import store_from_url
from actionlinks.stores.postgres import SCHEMA_STEPS, PostgresStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def database_url():
    async with fresh_database() as url:
        yield url


@pytest.fixture
async def store(database_url, clock):
    store = store_from_url(database_url, clock=clock)
    assert isinstance(store, PostgresStore)
    await store.connect()
    await store.migrate()
    yield store
    await store.aclose()


@pytest.fixture
def row_count(database_url):
    async def count():
        connection = await asyncpg.connect(database_url)
        try:
            names = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'actionlinks_schema'"
            )
            total = 0
            for (name,) in names:
                total += await connection.fetchval(f'SELECT count(*) FROM "{name}"')  # noqa: S608 - our own table names
            return total
        finally:
            await connection.close()

    return count


class TestPostgresLedger(LedgerContract):
    pass


class TestPostgresLinkStore(LinkStoreContract):
    pass


class TestPostgresOutbox(OutboxContract):
    pass


class TestPostgresEndpointStore(EndpointStoreContract):
    pass


async def _stores(url, clock, count):
    stores = [PostgresStore(url, clock=clock) for _ in range(count)]
    for store in stores:
        await store.connect()
    return stores


async def test_processes_starting_together_migrate_the_empty_database_once(
    database_url, clock
):
    """Six stores (six processes' pools) migrate an empty database at once:
    every one succeeds, and the schema is made once."""
    stores = await _stores(database_url, clock, 6)
    try:
        versions = await asyncio.gather(*(s.migrate() for s in stores))
        assert versions == [len(SCHEMA_STEPS)] * 6
        connection = await asyncpg.connect(database_url)
        try:
            assert (
                await connection.fetchval("SELECT count(*) FROM actionlinks_schema")
                == 1
            )
        finally:
            await connection.close()
    finally:
        for store in stores:
            await store.aclose()


async def test_a_database_from_a_newer_actionlinks_is_refused(store, database_url):
    """A schema version beyond what this version knows: a clear error."""
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("UPDATE actionlinks_schema SET version = 99")
    finally:
        await connection.close()
    with pytest.raises(LedgerUnavailableError, match="schema version 99, newer"):
        await store.migrate()


async def test_one_token_consumed_over_two_pools_succeeds_exactly_once(
    database_url, clock
):
    """Two processes' pools, 100 concurrent uses of one id: one wins."""
    first, second = await _stores(database_url, clock, 2)
    try:
        await first.migrate()
        expires = clock.now() + timedelta(minutes=5)
        results = await asyncio.gather(
            *(
                (first, second)[n % 2].ledger.consume("one", expires_at=expires)
                for n in range(100)
            )
        )
        assert results.count(True) == 1
        assert (await second.ledger.lookup("one")).state == "used"
    finally:
        await first.aclose()
        await second.aclose()


async def test_claims_over_two_pools_split_the_work_within_the_bound(
    database_url, clock
):
    """Workers of two processes claiming at once never share a delivery and
    together stay within the per-destination bound."""
    first, second = await _stores(database_url, clock, 2)
    try:
        await first.migrate()
        for number in range(40):
            await first.outbox.enqueue(
                message(clock, f"msg_{number}"), ["ep_a"], due_at=clock.now()
            )
        claims = await asyncio.gather(
            *(
                (first, second)[n % 2].outbox.claim(
                    channel="webhook",
                    holder=f"w{n}",
                    limit=4,
                    per_destination=10,
                    skip=(),
                    lease=timedelta(seconds=20),
                )
                for n in range(10)
            )
        )
        taken = [d.delivery_id for held in claims for d in held]
        assert len(taken) == len(set(taken)) == 10
    finally:
        await first.aclose()
        await second.aclose()


async def test_cancelled_queries_finish_cleanly_and_close_quietly(
    database_url, clock, caplog
):
    """Requests cancelled mid-query (a client gone, the service stopping) leave
    no connection half-used: nothing is logged, and the pool closes."""
    store = PostgresStore(database_url, clock=clock)
    await store.connect()
    await store.migrate()
    expires = clock.now() + timedelta(minutes=5)

    async def busy(n):
        while True:
            await store.ledger.consume(f"t{n}", expires_at=expires)
            await store.outbox.claim(
                channel="webhook",
                holder=f"w{n}",
                limit=5,
                per_destination=5,
                skip=(),
                lease=timedelta(seconds=20),
            )

    with caplog.at_level(logging.DEBUG):
        async with anyio.create_task_group() as group:
            for n in range(8):
                group.start_soon(busy, n)
            await anyio.sleep(0.3)
            group.cancel_scope.cancel()
        await store.aclose()
        gc.collect()
        await asyncio.sleep(0.05)
    noise = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noise == []


async def test_the_password_is_never_shown(clock):
    """Neither the store's repr nor the error of a refused connection shows
    the password."""
    url = "postgresql://postgres:s3cret-pw@127.0.0.1:1/test"
    store = PostgresStore(url, clock=clock)
    assert "s3cret-pw" not in repr(store)
    assert "127.0.0.1:1/test" in repr(store)
    with pytest.raises(LedgerUnavailableError) as raised:
        await store.connect()
    assert "s3cret-pw" not in str(raised.value)
    assert "127.0.0.1:1/test" in str(raised.value)


async def test_a_store_used_before_it_is_open_says_so(clock, database_url):
    """Before connect and after close: ServiceClosedError, never 'unused'."""
    store = PostgresStore(database_url, clock=clock)
    with pytest.raises(ServiceClosedError, match="async with service"):
        await store.ledger.consume("t", expires_at=clock.now())
    await store.connect()
    await store.migrate()
    await store.aclose()
    with pytest.raises(ServiceClosedError):
        await store.ledger.lookup("t")


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgresql://127.0.0.1:5432", "must name the database"),
        ("postgresql://u:abc?SECRET2@127.0.0.1:5432/x", "not a PostgreSQL URL"),
        ("postgresql://127.0.0.1:notaport/x", "not a PostgreSQL URL"),
        ("postgresql://postgres:2024/SECRET2@127.0.0.1:5432/x", "not a PostgreSQL URL"),
        ("postgresql://postgres:ab#SECRET2@127.0.0.1:5432/x", "not a PostgreSQL URL"),
    ],
)
def test_a_database_url_that_cannot_work_is_refused_at_once(url, said, clock):
    """A URL without a database or with a bad port: ConfigurationError, and
    its text never quotes a password."""
    with pytest.raises(ConfigurationError, match=said) as raised:
        store_from_url(url, clock=clock)
    assert "SECRET2" not in str(raised.value)


async def test_a_role_that_may_only_read_and_write_runs_on_a_migrated_database(
    store, database_url, clock
):
    """Migrated by its owner, the database serves a role without CREATE: its
    start finds the schema current and takes no lock and makes no table; on
    an empty database the same role gets a clear error."""
    role = f"al_rw_{secrets.token_hex(4)}"
    owner = await asyncpg.connect(database_url)
    try:
        await owner.execute(f"CREATE ROLE {role} LOGIN")
        await owner.execute(f"REVOKE CREATE ON SCHEMA public FROM {role}")
        await owner.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public "
            f"TO {role}"
        )
        await owner.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
        limited_url = database_url.replace("postgres@", f"{role}@")
        limited = PostgresStore(limited_url, clock=clock)
        await limited.connect()
        try:
            assert await limited.migrate() == len(SCHEMA_STEPS)
            expires = clock.now() + timedelta(minutes=5)
            assert await limited.ledger.consume("t", expires_at=expires) is True
            await limited.outbox.enqueue(message(clock), ["ep"], due_at=clock.now())
        finally:
            await limited.aclose()
        async with fresh_database() as empty_url:
            empty = PostgresStore(
                empty_url.replace("postgres@", f"{role}@"), clock=clock
            )
            await empty.connect()
            try:
                with pytest.raises(LedgerUnavailableError, match="permission denied"):
                    await empty.migrate()
            finally:
                await empty.aclose()
    finally:
        await owner.execute(f"DROP OWNED BY {role}")
        await owner.execute(f"DROP ROLE {role}")
        await owner.close()


async def test_a_backlog_of_expired_uses_is_swept_a_batch_per_use(
    store, database_url, clock
):
    """25,000 expired entries: no single use deletes them all; the first use
    of the minute sweeps a batch, and while batches come back full the next
    use sweeps again, until the backlog is gone."""
    from actionlinks.stores.pg_ledger import PURGE_BATCH
    from actionlinks.stores.rows import micros

    connection = await asyncpg.connect(database_url)
    try:
        past = micros(clock.now() - timedelta(days=1))
        await connection.copy_records_to_table(
            "ledger_entries",
            records=[(f"old-{n}", "used", past, past) for n in range(25_000)],
            columns=("token_id", "state", "at_us", "expires_us"),
        )
        expires = clock.now() + timedelta(minutes=5)
        left = []
        for n in range(4):
            await store.ledger.consume(f"new-{n}", expires_at=expires)
            left.append(
                await connection.fetchval(
                    "SELECT count(*) FROM ledger_entries WHERE token_id LIKE 'old-%'"
                )
            )
    finally:
        await connection.close()
    assert PURGE_BATCH == 10_000
    assert left == [15_000, 5_000, 0, 0]


async def test_connections_killed_under_the_pool_are_unavailable_then_replaced(
    database_url, clock
):
    """The server's processes behind a warm pool are terminated (a restart, a
    failover): each query either works or is LedgerUnavailableError (found by
    an audit: asyncpg's InternalClientError escaped and ended the workers),
    and the pool is whole again after."""
    store = PostgresStore(database_url, clock=clock)
    await store.connect()
    await store.migrate()
    try:

        async def hold_one():
            await store.database.run(lambda c: c.execute("SELECT pg_sleep(0.2)"))

        for _ in range(3):
            await asyncio.gather(*(hold_one() for _ in range(10)))  # ten warm
            admin = await asyncpg.connect(database_url)
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            finally:
                await admin.close()
            for _ in range(15):
                with contextlib.suppress(LedgerUnavailableError):
                    await store.database.fetchrow("SELECT 1")
        assert await store.database.fetchrow("SELECT 1") == (1,)
    finally:
        await store.aclose()


async def test_endpoint_adds_over_two_pools_stop_at_the_bound(database_url, clock):
    """Adds from two processes' pools at once, each allowed while fewer than
    ten are kept: exactly ten are kept (an audit found 1,001 of 1,000 when each
    process counted under a lock of its own)."""
    from contracts.outbox import endpoint

    first, second = await _stores(database_url, clock, 2)
    try:
        await first.migrate()

        def room(known):
            if len(known) >= 10:
                raise ValueError("full")

        results = await asyncio.gather(
            *(
                (first, second)[n % 2].endpoints.add(
                    endpoint(clock, f"ep_{n}"), room=room
                )
                for n in range(30)
            ),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 10
        assert len(await second.endpoints.all()) == 10
    finally:
        await first.aclose()
        await second.aclose()


async def test_the_schema_version_is_none_before_migrate_and_current_after(
    database_url, clock
):
    store = store_from_url(database_url, clock=clock)
    await store.connect()
    try:
        assert await store.schema_version() == 0
        assert await store.migrate() == len(SCHEMA_STEPS)
        assert await store.schema_version() == len(SCHEMA_STEPS)
    finally:
        await store.aclose()


def test_the_cli_says_it_created_the_schema_then_that_it_is_current(tmp_path, capsys):
    from pgserver import database_for_processes

    from actionlinks.cli import run

    with database_for_processes() as url:
        env = {"ACTIONLINKS_HOME": str(tmp_path), "ACTIONLINKS_DATABASE_URL": url}
        assert run(["init"], env) == 0
        capsys.readouterr()
        assert run(["migrate"], env) == 0
        created = capsys.readouterr().out
        assert run(["migrate"], env) == 0
        current = capsys.readouterr().out
    assert created.startswith("created the database schema (version ")
    assert current.startswith("the database schema is current (version ")
    assert "postgres@" not in created  # no credentials in the repr
