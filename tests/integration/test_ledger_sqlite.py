"""The SQLite ledger proves the ledger contract on a real database file."""

from __future__ import annotations

import sqlite3

import pytest
from contracts.ledger import LedgerContract

from actionlinks.database import SqliteDatabase
from actionlinks.errors import LedgerUnavailableError
from actionlinks.ledgers.sqlite import SqliteLedger

pytestmark = pytest.mark.integration


class TestSqliteLedger(LedgerContract):
    @pytest.fixture
    def make_ledger(self, tmp_path):
        opened = []

        def make(clock):
            database = SqliteDatabase(tmp_path / "ledger.db")
            opened.append(database)
            return SqliteLedger(database, clock=clock)

        yield make
        for database in opened:
            database.close()


async def test_database_is_in_wal_mode(tmp_path, clock):
    """The embedded default uses write-ahead logging."""
    database = SqliteDatabase(tmp_path / "l.db")
    SqliteLedger(database, clock=clock)
    database.close()
    with sqlite3.connect(tmp_path / "l.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_uses_survive_reopening_the_database(tmp_path, clock):
    """A consumed token stays consumed after the process reopens the file."""
    async with SqliteDatabase(tmp_path / "l.db") as database:
        first = SqliteLedger(database, clock=clock)
        await first.consume("t", expires_at=clock.now().replace(year=2030))
    async with SqliteDatabase(tmp_path / "l.db") as database:
        second = SqliteLedger(database, clock=clock)
        assert not await second.consume("t", expires_at=clock.now().replace(year=2030))


async def test_store_failure_is_an_error_never_unused(tmp_path, clock):
    """A broken database raises LedgerUnavailableError instead of answering."""
    database = SqliteDatabase(tmp_path / "l.db")
    ledger = SqliteLedger(database, clock=clock)
    database.close()
    with pytest.raises(LedgerUnavailableError):
        await ledger.consume("t", expires_at=clock.now())


def test_unopenable_database_raises_ledger_unavailable(tmp_path, clock):
    """A path that cannot hold a database gives a typed error."""
    with pytest.raises(LedgerUnavailableError):
        SqliteDatabase(tmp_path / "missing-dir" / "l.db")
