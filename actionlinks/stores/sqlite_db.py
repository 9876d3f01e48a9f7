"""The embedded SQLite database: one file in WAL mode, shared by every process.

A write runs in the event loop when it can start at once: when no other write
of this process is under way and no other process holds the write lock, it
runs as one ``BEGIN IMMEDIATE`` transaction on a connection that never waits
(busy timeout 0). Otherwise (SQLite answers busy) nothing of it was done, and
it runs again in a worker thread on a connection that waits up to 15 s, behind
the one lock that orders this process's writes. One-statement writes issued
in the same turn of an event loop commit together, as one transaction (see
:mod:`~actionlinks.stores.sqlite_group`). A worker-thread round trip
costs about ten times a small write, so the event loop is held for tens of
microseconds, never for a lock. Scans and sweeps always run in the thread.
Reads run inline on a third, read-only connection: in WAL mode a reader never
waits for a writer. Failures become
:class:`~actionlinks.errors.LedgerUnavailableError`; use before :meth:`connect`
or after :meth:`aclose` is a :class:`~actionlinks.errors.ServiceClosedError`.

The file is created with mode 0600: it holds who was sent which link.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio.to_thread

from actionlinks.errors import LedgerUnavailableError, ServiceClosedError
from actionlinks.stores.sqlite_group import (
    GROUP_LIMIT,
    Outcome,
    Pending,
    apply,
    is_busy,
    together,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator, Sequence
    from pathlib import Path

T = TypeVar("T")
_log = logging.getLogger(__name__)
Row = tuple[Any, ...]

_BUSY_TIMEOUT_MS = 15_000
CHECKPOINT_EVERY = 1000
"""Inline commits between two checkpoints of the write-ahead log (in a thread)."""
_WAL_SIZE_LIMIT = 64 * 1024 * 1024
_READ_BUSY_TIMEOUT_MS = 1_000


def statements(script: str) -> Iterator[str]:
    """The complete SQL statements of ``script``, one by one."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


def _check_version(found: int, known: int) -> None:
    if found > known:
        raise LedgerUnavailableError(
            f"the database has schema version {found}, newer than this "
            f"actionlinks knows ({known}); upgrade actionlinks"
        )


class SqliteDatabase:
    """A SQLite file used from async code, opened by :meth:`connect`.

    Args:
        path: the database file (created, mode 0600, if absent).
    """

    __slots__ = (
        "_commits",
        "_groups",
        "_lock",
        "_path",
        "_quick",
        "_reader",
        "_tasks",
        "_writer",
    )

    def __init__(self, path: Path) -> None:
        """Remember the file; nothing is opened yet."""
        self._path = path
        self._lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._quick: sqlite3.Connection | None = None
        self._commits = 0  # inline commits since the last checkpoint
        self._reader: sqlite3.Connection | None = None
        # Statements waiting for the end of this turn, per event loop: each
        # loop commits its own (a service may be used from several threads).
        self._groups: dict[asyncio.AbstractEventLoop, list[Pending]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # groups in the thread

    def __repr__(self) -> str:
        """Name the file."""
        return f"SqliteDatabase({str(self._path)!r})"

    @property
    def is_connected(self) -> bool:
        """Whether :meth:`connect` opened the file and it is not closed."""
        return self._writer is not None

    async def connect(self) -> None:
        """Open the file in WAL mode (in a worker thread); a no-op when open.

        Raises:
            LedgerUnavailableError: the file cannot be opened as a database.
        """
        await anyio.to_thread.run_sync(self._connect)

    def _connect(self) -> None:
        with self._lock:
            if self._writer is not None:
                return
            try:
                # Created private: the file says who was sent which link.
                os.close(os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600))
                writer = sqlite3.connect(
                    self._path,
                    timeout=_BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
                writer.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                writer.execute("PRAGMA journal_mode = WAL")
                writer.execute("PRAGMA synchronous = NORMAL")
                # A log that grew past this (several processes writing at
                # once) is cut back to it when it starts over.
                writer.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
                reader = sqlite3.connect(
                    self._path,
                    timeout=_READ_BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,  # sqlite3.threadsafety is 3: serialized
                )
                reader.execute("PRAGMA query_only = ON")
                quick = sqlite3.connect(
                    self._path,
                    timeout=0,  # busy at once: the write goes to the thread
                    isolation_level=None,
                    check_same_thread=False,
                )
                quick.execute("PRAGMA busy_timeout = 0")
                quick.execute("PRAGMA wal_autocheckpoint = 0")  # see _checkpoint_if_due
                quick.execute("PRAGMA synchronous = NORMAL")
            except (OSError, sqlite3.Error) as exc:
                raise LedgerUnavailableError(
                    f"cannot open the database {self._path}: {exc}"
                ) from exc
            self._writer, self._reader, self._quick = writer, reader, quick

    async def aclose(self) -> None:
        """Close both connections (in a worker thread); a no-op when closed."""
        await anyio.to_thread.run_sync(self.close)

    def close(self) -> None:
        """Close both connections."""
        with self._lock:
            connections = (self._writer, self._reader, self._quick)
            self._writer = self._reader = self._quick = None
            for connection in connections:
                if connection is not None:
                    connection.close()

    def _closed(self) -> ServiceClosedError:
        return ServiceClosedError(
            f"the database {self._path.name} is not open: open the service first "
            "(async with service, e.g. in your app's lifespan)"
        )

    async def schema_version(self) -> int:
        """The schema version the file has (0: none yet)."""
        row = await self.fetchone("PRAGMA user_version")
        return 0 if row is None else int(row[0])

    async def migrate(self, steps: Sequence[str]) -> int:
        """Apply the schema steps the file lacks, in one write transaction.

        ``steps[n]`` brings the schema from version ``n`` to ``n + 1``; the
        version is SQLite's ``user_version``. Processes that start together
        serialise on the write lock, and the later ones find nothing to do.

        Returns:
            The schema version now.

        Raises:
            LedgerUnavailableError: a step failed (nothing of it is kept), or
                the file comes from a newer actionlinks.
        """

        def migrate(connection: sqlite3.Connection) -> int:
            connection.execute("BEGIN IMMEDIATE")
            try:
                (version,) = connection.execute("PRAGMA user_version").fetchone()
                _check_version(version, len(steps))
                for number in range(version, len(steps)):
                    for statement in statements(steps[number]):
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {len(steps)}")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return len(steps)

        return await self.run(migrate, inline=False)

    async def run(
        self, work: Callable[[sqlite3.Connection], T], *, inline: bool = True
    ) -> T:
        """Run ``work`` with a write connection, at once or in a worker thread.

        Inline, ``work`` runs inside one ``BEGIN IMMEDIATE`` transaction, so
        that a busy answer leaves nothing done and it can run again in the
        thread (in autocommit mode there). ``inline=False`` for work that may
        take long (scans, sweeps) or manages its own transaction.

        Raises:
            LedgerUnavailableError: SQLite failed.
            ServiceClosedError: the database is not open.
        """
        if inline:
            done, result = self._inline(work, atomic=True)
            if done:
                await self._checkpoint_if_due()
                return cast("T", result)

        def locked() -> T:
            with self._lock:
                if self._writer is None:
                    raise self._closed()
                return work(self._writer)

        try:
            return await anyio.to_thread.run_sync(locked)
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"the database failed: {exc}") from exc

    async def transaction(
        self, work: Callable[[sqlite3.Connection], T], *, inline: bool = True
    ) -> T:
        """Run ``work`` in one write transaction (``BEGIN IMMEDIATE``).

        Nothing of it is kept when it raises. It runs at once when it can, as
        :meth:`run` says; ``inline=False`` for work that may take long.

        Raises:
            LedgerUnavailableError: SQLite failed.
            ServiceClosedError: the database is not open.
        """
        if inline:
            done, result = self._inline(work, atomic=True)
            if done:
                await self._checkpoint_if_due()
                return cast("T", result)

        def atomic(connection: sqlite3.Connection) -> T:
            connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
            return result

        return await self.run(atomic, inline=False)

    async def execute(self, sql: str, parameters: tuple[Any, ...] = ()) -> int:
        """Run one statement; the number of rows it changed.

        It commits with the other statements issued in this turn of the event
        loop (see :mod:`~actionlinks.stores.sqlite_group`), inline when the
        lock is free, else in the thread; its answer comes once it committed.
        Cancelled before its group started, it does not run; once started, it
        runs to the end unheard: a caller whose writes must not be split runs
        them where no cancellation reaches (see :mod:`actionlinks.settle`).

        Raises:
            LedgerUnavailableError: SQLite failed.
            ServiceClosedError: the database is not open.
        """
        if self._quick is None:
            raise self._closed()
        loop = asyncio.get_running_loop()
        pending = Pending(sql, parameters, loop.create_future())
        group = self._groups.get(loop)
        if group is None:
            self._groups[loop] = [pending]
            loop.call_soon(self._commit_group, loop)
        else:
            group.append(pending)
        return await pending.answer

    def _commit_group(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit ``loop``'s pending statements, inline if the lock is free."""
        waiting = self._groups.pop(loop, [])
        if len(waiting) > GROUP_LIMIT:  # the rest start the next group
            self._groups[loop] = waiting[GROUP_LIMIT:]
            loop.call_soon(self._commit_group, loop)
        group = [p for p in waiting[:GROUP_LIMIT] if not p.answer.cancelled()]
        quick = self._quick
        if not group:
            return
        if quick is None:
            _settle_all(group, self._closed())
            return
        if not self._lock.acquire(blocking=False):
            self._spawn(loop, self._commit_in_thread(group))
            return
        try:
            changed = together(quick, group)
        except Exception:  # noqa: BLE001 - busy, or a bad statement: see the thread
            self._spawn(loop, self._commit_in_thread(group))
            return
        finally:
            self._lock.release()
        self._commits += 1
        for pending, count in zip(group, changed, strict=True):
            if not pending.answer.done():
                pending.answer.set_result(count)
        if self._commits >= CHECKPOINT_EVERY:
            self._spawn(loop, self._checkpoint_if_due())

    async def _commit_in_thread(self, group: list[Pending]) -> None:
        """Commit ``group`` in the thread, each statement alone if together fails."""

        def locked() -> list[Outcome]:
            with self._lock:
                if self._writer is None:
                    raise self._closed()
                return apply(self._writer, group)

        try:
            outcomes = await anyio.to_thread.run_sync(locked)
        except ServiceClosedError as exc:
            _settle_all(group, exc)
        except Exception as exc:  # noqa: BLE001 - every caller hears of it
            _settle(group, [exc] * len(group))
        except BaseException:
            # The loop is shutting down; the thread may still commit, so no
            # caller is told that nothing was done: their answers are lost.
            for pending in group:
                pending.answer.cancel()
            raise
        else:
            _settle(group, outcomes)

    def _spawn(
        self, loop: asyncio.AbstractEventLoop, work: Coroutine[Any, Any, None]
    ) -> None:
        task = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _inline(
        self, work: Callable[[sqlite3.Connection], T], *, atomic: bool
    ) -> tuple[bool, T | None]:
        """``(True, result)`` if ``work`` ran now; ``(False, None)`` if busy.

        ``atomic``: wrap it in ``BEGIN IMMEDIATE`` … ``COMMIT`` (for more than
        one statement), so that a busy answer midway leaves nothing done.
        """
        if not self._lock.acquire(blocking=False):
            return False, None  # a write of this process is under way
        try:
            quick = self._quick
            if quick is None:
                raise self._closed()
            try:
                if not atomic:
                    result = work(quick)
                else:
                    quick.execute("BEGIN IMMEDIATE")
                    try:
                        result = work(quick)
                        quick.execute("COMMIT")
                    except BaseException:
                        if quick.in_transaction:
                            quick.execute("ROLLBACK")
                        raise
            except sqlite3.OperationalError as exc:
                if is_busy(exc):
                    return False, None  # another process writes: nothing done
                raise LedgerUnavailableError(f"the database failed: {exc}") from exc
            except sqlite3.Error as exc:
                raise LedgerUnavailableError(f"the database failed: {exc}") from exc
            self._commits += 1
            return True, result
        finally:
            self._lock.release()

    async def _checkpoint_if_due(self) -> None:
        """Every :data:`CHECKPOINT_EVERY` inline commits, checkpoint in a thread.

        The inline connection never checkpoints itself (that would hold the
        event loop for milliseconds). The checkpoint holds this process's write
        lock, so that none of its writes lands meanwhile: once it copied every
        frame back, the next write starts the log over and it stays small (a
        checkpoint racing the writers never completes, and the log grew by
        every commit). Writes meanwhile wait in the thread, not in the loop.
        """
        if self._commits < CHECKPOINT_EVERY:
            return
        self._commits = 0

        def checkpoint() -> None:
            with self._lock:
                if self._writer is not None:
                    self._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")

        try:
            await anyio.to_thread.run_sync(checkpoint)
        except sqlite3.Error as exc:  # the next one, or a thread write, catches up
            _log.warning("a WAL checkpoint of %s failed: %s", self._path.name, exc)

    async def fetchone(self, sql: str, parameters: tuple[Any, ...] = ()) -> Row | None:
        """The first row of a read-only query, or ``None``, read inline.

        Raises:
            LedgerUnavailableError: SQLite failed.
            ServiceClosedError: the database is not open.
        """
        rows = self._read(sql, parameters, limit=1)
        return rows[0] if rows else None

    async def fetchall(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[Row]:
        """All rows of a read-only query, read inline.

        Raises:
            LedgerUnavailableError: SQLite failed.
            ServiceClosedError: the database is not open.
        """
        return self._read(sql, parameters, limit=None)

    async def fetchall_in_thread(
        self, sql: str, parameters: tuple[Any, ...] = ()
    ) -> list[Row]:
        """All rows of a read-only query that may read many rows, in a thread.

        Raises:
            LedgerUnavailableError: SQLite failed.
            ServiceClosedError: the database is not open.
        """
        if self._reader is None:
            raise self._closed()

        def read() -> list[Row]:
            # A connection of its own: the shared reader's mutex would make
            # every inline read (and so the event loop) wait for this scan.
            connection = sqlite3.connect(
                self._path.resolve().as_uri() + "?mode=ro",  # percent-encoded
                uri=True,
                timeout=_READ_BUSY_TIMEOUT_MS / 1000,
            )
            try:
                return connection.execute(sql, parameters).fetchall()
            finally:
                connection.close()

        try:
            return await anyio.to_thread.run_sync(read)
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"the database failed: {exc}") from exc

    def _read(
        self, sql: str, parameters: tuple[Any, ...], *, limit: int | None
    ) -> list[Row]:
        reader = self._reader
        if reader is None:
            raise self._closed()
        try:
            cursor = reader.execute(sql, parameters)
            rows: list[Row] = (
                cursor.fetchall() if limit is None else cursor.fetchmany(limit)
            )
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"the database failed: {exc}") from exc
        return rows


def _settle(group: Sequence[Pending], outcomes: Sequence[Outcome]) -> None:
    """Give each statement's caller its answer."""
    for pending, outcome in zip(group, outcomes, strict=True):
        if pending.answer.done():
            continue
        if isinstance(outcome, sqlite3.Error):
            failed = LedgerUnavailableError(f"the database failed: {outcome}")
            failed.__cause__ = outcome
            pending.answer.set_exception(failed)
        elif isinstance(outcome, Exception):  # a bad parameter: the caller's bug
            pending.answer.set_exception(outcome)
        else:
            pending.answer.set_result(outcome)


def _settle_all(group: Sequence[Pending], exc: BaseException) -> None:
    for pending in group:
        if not pending.answer.done():
            pending.answer.set_exception(exc)
