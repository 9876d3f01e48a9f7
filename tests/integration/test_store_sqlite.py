"""The SQLite store proves the ledger and link store contracts on a real file."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import timedelta

import pytest
from contracts.ledger import LedgerContract
from contracts.links import LinkStoreContract
from contracts.outbox import EndpointStoreContract, OutboxContract

from actionlinks.errors import LedgerUnavailableError, ServiceClosedError
from actionlinks.stores import SqliteStore
from actionlinks.stores.sqlite import SCHEMA_STEPS

pytestmark = pytest.mark.integration

TABLES = ("ledger_entries", "subject_revocations", "link_records")


@pytest.fixture
def store(sqlite_store):
    return sqlite_store


def count_rows(path):
    with sqlite3.connect(path) as connection:
        names = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        ]
        return sum(
            connection.execute(f"SELECT count(*) FROM {name}").fetchone()[0]  # noqa: S608 - our own table names
            for name in names
        )


@pytest.fixture
def row_count(tmp_path):
    async def count():
        return count_rows(tmp_path / "store.db")

    return count


class TestSqliteLedger(LedgerContract):
    pass


class TestSqliteLinkStore(LinkStoreContract):
    pass


class TestSqliteOutbox(OutboxContract):
    pass


class TestSqliteEndpointStore(EndpointStoreContract):
    pass


async def test_database_is_in_wal_mode_and_private(tmp_path, store):
    """The embedded default uses write-ahead logging; issue 6 item 9: mode 0600."""
    path = tmp_path / "store.db"
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_database_is_private_whatever_the_umask(tmp_path, clock):
    """A permissive umask still gives a 0600 database file."""
    old = os.umask(0o000)
    try:
        store = SqliteStore(tmp_path / "open.db", clock=clock)
        await store.connect()
        await store.aclose()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "open.db").stat().st_mode) == 0o600


async def test_uses_survive_reopening_the_database(tmp_path, clock):
    """A consumed token stays consumed after the process reopens the file."""
    for expected in (True, False):
        store = SqliteStore(tmp_path / "l.db", clock=clock)
        await store.connect()
        await store.migrate()
        later = clock.now() + timedelta(days=1)
        assert await store.ledger.consume("t", expires_at=later) is expected
        await store.aclose()


async def test_closed_store_is_an_error_never_unused(tmp_path, clock):
    """Before connect and after close: ServiceClosedError, a LedgerUnavailableError."""
    store = SqliteStore(tmp_path / "l.db", clock=clock)
    with pytest.raises(ServiceClosedError, match="async with service"):
        await store.ledger.consume("t", expires_at=clock.now())
    await store.connect()
    await store.migrate()
    await store.aclose()
    with pytest.raises(LedgerUnavailableError):
        await store.ledger.lookup("t")


async def test_unopenable_database_raises_ledger_unavailable(tmp_path, clock):
    """A path that cannot hold a database gives a typed error."""
    store = SqliteStore(tmp_path / "missing-dir" / "l.db", clock=clock)
    with pytest.raises(LedgerUnavailableError):
        await store.connect()


async def test_a_newer_schema_is_refused(tmp_path, clock):
    """A file written by a newer actionlinks is not touched."""
    path = tmp_path / "l.db"
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {len(SCHEMA_STEPS) + 1}")
    store = SqliteStore(path, clock=clock)
    await store.connect()
    with pytest.raises(LedgerUnavailableError, match="newer"):
        await store.migrate()
    await store.aclose()


async def test_files_of_the_first_schema_are_carried_forward(tmp_path, clock):
    """Uses, revocations and link records of 0.1.0 builds survive the migration;
    an access token revoked then stays revoked under its new key."""
    path = tmp_path / "old.db"
    start = clock.now().timestamp()
    with sqlite3.connect(path) as connection:
        connection.executescript(SCHEMA_STEPS[0])
        connection.execute(
            "INSERT INTO ledger_uses VALUES ('used-one', 'used', ?, ?)",
            (start, start + 3600),
        )
        connection.execute(
            "INSERT INTO ledger_uses VALUES ('revoked-one', 'revoked', ?, ?)",
            (start, start + 3600),
        )
        connection.execute(
            "INSERT INTO ledger_revocations VALUES ('u', '', ?, ?)",
            (start + 0.25, start + 3600),
        )
        connection.execute(
            "INSERT INTO links VALUES ('used-one', 'invite', 'u', ?, ?, NULL, ?, NULL)",
            (start, start + 3600, start + 1),
        )
        connection.execute(
            "INSERT INTO link_attempts (token_id, action, at, reason) "
            "VALUES ('used-one', 'invite', ?, 'already_used'), "
            "(NULL, NULL, ?, 'malformed')",
            (start + 2, start + 2),
        )
    store = SqliteStore(path, clock=clock)
    await store.connect()
    assert await store.migrate() == len(SCHEMA_STEPS)
    assert (await store.ledger.lookup("used-one")).state == "used"
    assert (await store.ledger.lookup("access:revoked-one")).state == "revoked"
    assert await store.ledger.is_subject_revoked(
        "u", action="invite", issued_at=clock.now() + timedelta(milliseconds=200)
    )
    status = await store.links.status("used-one")
    assert status.state == "used"
    assert [(a.reason, a.count) for a in status.rejected] == [("already_used", 1)]
    counts = await store.links.rejection_counts(since=clock.now())
    assert counts == {"already_used": 1, "malformed": 1}
    await store.aclose()


# --- writes at once, or in the thread when another process holds the lock ---------


async def test_a_write_behind_another_process_lock_waits_in_the_thread(
    tmp_path, store, clock
):
    """Another process's write transaction: the consume waits off the event loop.

    The loop keeps running meanwhile (a ticker advances), and once the lock is
    released the consume lands: nothing is lost and nothing is doubled.
    """
    import anyio

    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # the other process holds the write lock
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(ticker)
        expires = clock.now() + timedelta(hours=1)
        consuming, consumed = anyio.Event(), anyio.Event()
        results = []

        async def consume():
            consuming.set()
            results.append(await store.ledger.consume("jti-1", expires_at=expires))
            consumed.set()

        tasks.start_soon(consume)
        await consuming.wait()
        await anyio.sleep(0.2)
        assert results == []  # still waiting for the lock
        assert ticks >= 5  # and the event loop was never held
        other.execute("COMMIT")
        with anyio.fail_after(10):
            await consumed.wait()
        tasks.cancel_scope.cancel()
    other.close()
    assert results == [True]
    assert not await store.ledger.consume("jti-1", expires_at=expires)


async def test_an_inline_transaction_that_fails_leaves_nothing(store):
    """Work that raises midway is rolled back whole, inline as in the thread."""

    def half(connection):
        connection.execute(
            "INSERT INTO subject_revocations (subject, action, before_us, until_us) "
            "VALUES ('u', 'a', 1, 2)"
        )
        raise RuntimeError("midway")

    with pytest.raises(RuntimeError):
        await store.database.transaction(half)
    with pytest.raises(RuntimeError):
        await store.database.run(half)
    assert await store.database.fetchall("SELECT * FROM subject_revocations") == []


async def test_the_write_ahead_log_stays_small_under_concurrent_writers(
    tmp_path, store, monkeypatch
):
    """Eight writers at once, checkpoints every 200 commits: the log starts over.

    Before, the checkpoint ran beside the inline writers and never completed,
    so the log grew by every commit (24,000 commits: 120 MB).
    """
    import asyncio

    from actionlinks.stores import sqlite_db

    monkeypatch.setattr(sqlite_db, "CHECKPOINT_EVERY", 200)

    async def writer(number):
        for index in range(3000):
            await store.database.execute(
                "INSERT INTO subject_revocations (subject, action, before_us, "
                "until_us) VALUES (?, 'a', 1, 2)",
                (f"{number}-{index}",),
            )

    await asyncio.gather(*(writer(n) for n in range(8)))
    rows = await store.database.fetchone("SELECT count(*) FROM subject_revocations")
    assert rows == (24000,)
    # About 11 MB at most, however long it runs; 120 MB and growing before.
    assert (tmp_path / "store.db-wal").stat().st_size < 32 * 1024 * 1024


async def test_the_schema_version_is_none_before_migrate_and_current_after(
    tmp_path, clock
):
    store = SqliteStore(tmp_path / "fresh.db", clock=clock)
    await store.connect()
    try:
        assert await store.schema_version() == 0
        assert await store.migrate() == len(SCHEMA_STEPS)
        assert await store.schema_version() == len(SCHEMA_STEPS)
    finally:
        await store.aclose()
