"""The embedded SQLite database: one file in WAL mode, shared by every process.

Writes run in autocommit mode in a worker thread, behind one lock, because they
may wait for another process's write lock. Reads run inline on a second,
read-only connection: in WAL mode a reader never waits for a writer, and a
worker-thread round trip (about 80 µs here) costs ten times the query. Failures
become :class:`~actionlinks.errors.LedgerUnavailableError`. The ledger and the
link-status store each add their own tables.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio.to_thread

from actionlinks.errors import LedgerUnavailableError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import TracebackType

T = TypeVar("T")
Row = tuple[Any, ...]

_BUSY_TIMEOUT_MS = 15_000
_READ_BUSY_TIMEOUT_MS = 1_000


class SqliteDatabase:
    """A connection to a SQLite file, used from async code.

    Args:
        path: the database file (created if absent).

    Raises:
        LedgerUnavailableError: the file cannot be opened as a database.
    """

    __slots__ = ("_connection", "_lock", "_path", "_reader")

    def __init__(self, path: Path) -> None:
        """Open the file in WAL mode with a generous busy timeout."""
        self._path = path
        self._lock = threading.Lock()
        try:
            connection = sqlite3.connect(
                path,
                timeout=_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            reader = sqlite3.connect(
                path,
                timeout=_READ_BUSY_TIMEOUT_MS / 1000,
                isolation_level=None,
                check_same_thread=False,  # sqlite3.threadsafety is 3: serialized
            )
            reader.execute("PRAGMA query_only = ON")
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(
                f"cannot open the database {path}: {exc}"
            ) from exc
        self._connection = connection
        self._reader = reader

    def __repr__(self) -> str:
        """Name the file."""
        return f"SqliteDatabase({str(self._path)!r})"

    def create_schema(self, schema: str) -> None:
        """Run ``CREATE … IF NOT EXISTS`` statements (at start-up).

        Raises:
            LedgerUnavailableError: the schema cannot be created.
        """
        try:
            with self._lock:
                self._connection.executescript(schema)
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"cannot create the schema: {exc}") from exc

    def close(self) -> None:
        """Close both connections."""
        with self._lock:
            self._connection.close()
            self._reader.close()

    async def __aenter__(self) -> Self:
        """Use the database as an async context manager that closes it."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the connection."""
        self.close()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` with the connection in a worker thread.

        Raises:
            LedgerUnavailableError: SQLite failed.
        """

        def locked() -> T:
            with self._lock:
                return work(self._connection)

        try:
            return await anyio.to_thread.run_sync(locked)
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"the database failed: {exc}") from exc

    async def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        return await self.run(lambda c: c.execute(sql, parameters).rowcount)

    def run_now(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the write connection in this thread (at shutdown).

        Raises:
            LedgerUnavailableError: SQLite failed.
        """
        try:
            with self._lock:
                return work(self._connection)
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"the database failed: {exc}") from exc

    async def fetchone(self, sql: str, parameters: tuple[Any, ...] = ()) -> Row | None:
        """The first row of a read-only query, or ``None``, read inline.

        Raises:
            LedgerUnavailableError: SQLite failed.
        """
        try:
            row: Row | None = self._reader.execute(sql, parameters).fetchone()
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"the database failed: {exc}") from exc
        return row

    async def fetchall(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[Row]:
        """All rows of a read-only query, read inline.

        Raises:
            LedgerUnavailableError: SQLite failed.
        """
        try:
            rows: list[Row] = self._reader.execute(sql, parameters).fetchall()
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"the database failed: {exc}") from exc
        return rows
