"""Group commit: the one-statement writes of one event-loop turn commit together."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import timedelta

import pytest

from actionlinks.errors import LedgerUnavailableError, ServiceClosedError
from actionlinks.stores import SqliteStore, store_from_url

pytestmark = pytest.mark.integration

INSERT = (
    "INSERT INTO subject_revocations (subject, action, before_us, until_us) "
    "VALUES (?, 'a', 1, 2)"
)


@pytest.fixture
def store(sqlite_store):
    return sqlite_store


async def subjects(store):
    rows = await store.database.fetchall("SELECT subject FROM subject_revocations")
    return sorted(subject for (subject,) in rows)


async def test_writes_issued_in_one_loop_turn_commit_in_one_transaction(store):
    """Twenty writers, one BEGIN … COMMIT; each writer hears its own row count."""
    seen: list[str] = []
    store.database._quick.set_trace_callback(seen.append)  # counts commits
    changed = await asyncio.gather(
        *(store.database.execute(INSERT, (f"s{n:02}",)) for n in range(20))
    )
    store.database._quick.set_trace_callback(None)
    assert changed == [1] * 20
    assert seen.count("BEGIN IMMEDIATE") == 1
    assert seen.count("COMMIT") == 1
    assert await subjects(store) == [f"s{n:02}" for n in range(20)]


async def test_two_uses_of_one_link_in_one_group_leave_exactly_one_winner(store, clock):
    expires = clock.now() + timedelta(hours=1)
    results = await asyncio.gather(
        *(store.ledger.consume("jti-same", expires_at=expires) for _ in range(8)),
        *(store.ledger.consume(f"jti-{n}", expires_at=expires) for n in range(8)),
    )
    assert results[:8].count(True) == 1
    assert results[8:] == [True] * 8


async def test_a_failing_statement_fails_only_its_own_caller(store):
    """A bad table and a parameter SQLite cannot hold: their callers fail alone."""
    results = await asyncio.gather(
        store.database.execute(INSERT, ("first",)),
        store.database.execute("INSERT INTO no_such_table VALUES (1)"),
        store.database.execute(INSERT, (2**70,)),
        store.database.execute(INSERT, ("last",)),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], LedgerUnavailableError)
    assert "no_such_table" in str(results[1])
    # (CPython's sqlite3 may word it with the last error of the connection.)
    assert isinstance(results[2], (OverflowError, LedgerUnavailableError))
    assert results[3] == 1
    assert await subjects(store) == ["first", "last"]


async def test_a_write_cancelled_before_its_group_ran_is_not_done(store):
    writing = asyncio.ensure_future(store.database.execute(INSERT, ("cancelled",)))
    await asyncio.sleep(0)  # the write waits for its group now
    writing.cancel()
    kept = await store.database.execute(INSERT, ("kept",))
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert kept == 1
    assert await subjects(store) == ["kept"]


async def test_a_group_behind_another_process_lock_lands_from_the_thread(
    tmp_path, store
):
    """The group waits in the thread; then every write lands once."""
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writes = asyncio.gather(
        *(store.database.execute(INSERT, (f"w{n}",)) for n in range(5))
    )
    await asyncio.sleep(0.1)  # the loop runs on meanwhile
    assert not writes.done()
    other.execute("COMMIT")
    other.close()
    assert await asyncio.wait_for(writes, 10) == [1] * 5
    assert await subjects(store) == [f"w{n}" for n in range(5)]


async def test_a_write_pending_when_the_database_closes_hears_it_closed(store):
    writing = asyncio.ensure_future(store.database.execute(INSERT, ("late",)))
    await asyncio.sleep(0)
    store.database.close()
    with pytest.raises(ServiceClosedError):
        await writing
    with pytest.raises(ServiceClosedError):
        await store.database.execute(INSERT, ("after",))
    await store.connect()
    assert await subjects(store) == []


async def test_more_writes_than_one_group_holds_all_land(store, monkeypatch):
    from actionlinks.stores import sqlite_db

    monkeypatch.setattr(sqlite_db, "GROUP_LIMIT", 7)
    changed = await asyncio.gather(
        *(store.database.execute(INSERT, (f"m{n:02}",)) for n in range(30))
    )
    assert changed == [1] * 30
    assert len(await subjects(store)) == 30


def test_two_event_loops_writing_at_once_each_hear_every_answer(tmp_path, clock):
    """A store shared by two threads' loops: no loop drops another's writes."""
    store = store_from_url(f"sqlite:///{tmp_path / 'store.db'}", clock=clock)
    assert isinstance(store, SqliteStore)
    asyncio.run(store.connect())
    asyncio.run(store.migrate())
    answers: dict[str, list[int]] = {}
    start = threading.Barrier(2)

    def writer(name: str) -> None:
        async def write() -> list[int]:
            start.wait()
            changed: list[int] = []
            for batch in range(20):
                changed += await asyncio.gather(
                    *(
                        store.database.execute(INSERT, (f"{name}-{batch}-{n}",))
                        for n in range(10)
                    )
                )
            return changed

        answers[name] = asyncio.run(write())

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers == {"a": [1] * 200, "b": [1] * 200}
    rows = asyncio.run(subjects(store))
    assert len(rows) == 400
    assert store.database._groups == {}  # nothing left behind for a dead loop
    asyncio.run(store.aclose())


def test_a_loop_that_ended_with_a_write_pending_leaves_the_next_loop_alone(
    tmp_path, clock
):
    store = store_from_url(f"sqlite:///{tmp_path / 'store.db'}", clock=clock)
    assert isinstance(store, SqliteStore)
    asyncio.run(store.connect())
    asyncio.run(store.migrate())

    async def abandon() -> None:  # the loop closes before the group commits
        asyncio.get_running_loop().create_task(
            store.database.execute(INSERT, ("abandoned",))
        )

    asyncio.run(abandon())

    async def write() -> int:
        return await store.database.execute(INSERT, ("next",))

    assert asyncio.run(write()) == 1
    assert "next" in asyncio.run(subjects(store))
    asyncio.run(store.aclose())


async def test_a_group_behind_a_lock_that_stays_busy_fails_once_not_per_statement(
    tmp_path, store
):
    """Each statement run alone would wait the busy timeout again, under the
    process's write lock (256 writes at 15 s: over an hour)."""
    writer = store.database._writer
    writer.execute("PRAGMA busy_timeout = 50")  # stands for the thread's 15 s
    tried: list[str] = []
    writer.set_trace_callback(tried.append)
    other = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # an operator's sqlite3 shell, say
    try:
        results = await asyncio.gather(
            *(store.database.execute(INSERT, (f"s{n}",)) for n in range(20)),
            return_exceptions=True,
        )
    finally:
        writer.set_trace_callback(None)
        other.execute("ROLLBACK")
        other.close()
    assert all(isinstance(r, LedgerUnavailableError) for r in results), results
    assert all("locked" in str(r) for r in results)
    assert [sql for sql in tried if sql.startswith("INSERT")] == []
