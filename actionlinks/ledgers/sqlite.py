"""The embedded default ledger: a SQLite database file in WAL mode.

Each operation is one statement in autocommit mode, so ``consume`` is atomic
across threads and processes that share the file
(``INSERT … ON CONFLICT DO NOTHING``). Blocking calls run in a worker thread.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio.to_thread

from actionlinks.errors import LedgerUnavailableError
from actionlinks.ledger import LedgerEntry

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import TracebackType

    from actionlinks.clock import Clock

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_uses (
    token_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('used', 'revoked')),
    at REAL NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ledger_uses_expiry ON ledger_uses (expires_at);
CREATE TABLE IF NOT EXISTS ledger_revocations (
    subject TEXT NOT NULL,
    action TEXT NOT NULL,
    revoked_before REAL NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (subject, action)
) WITHOUT ROWID;
"""
_PURGE_EVERY = timedelta(minutes=1)
_BUSY_TIMEOUT_MS = 15_000


def _instant(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class SqliteLedger:
    """A ledger in a SQLite file, shared by every process that opens it.

    Args:
        path: the database file (created with the schema if absent).
        clock: stamps uses and drives purging of expired entries.

    Raises:
        LedgerUnavailableError: the database cannot be opened.
    """

    __slots__ = ("_clock", "_connection", "_last_purge", "_lock", "_path")

    def __init__(self, path: Path, *, clock: Clock) -> None:
        """Open (and if needed create) the database."""
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        self._last_purge = datetime.min.replace(tzinfo=UTC)
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
            connection.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(
                f"cannot open the ledger database {path}: {exc}"
            ) from exc
        self._connection = connection

    def __repr__(self) -> str:
        """Name the file."""
        return f"SqliteLedger({str(self._path)!r})"

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._connection.close()

    async def __aenter__(self) -> Self:
        """Use the ledger as an async context manager that closes it."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the connection."""
        self.close()

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                return work(self._connection)

        try:
            return await anyio.to_thread.run_sync(locked)
        except sqlite3.Error as exc:
            raise LedgerUnavailableError(f"the ledger database failed: {exc}") from exc

    async def _execute(self, sql: str, parameters: tuple[Any, ...]) -> int:
        return await self._run(lambda c: c.execute(sql, parameters).rowcount)

    async def consume(self, token_id: str, *, expires_at: datetime) -> bool:
        """Mark ``token_id`` used; ``True`` only for the first caller anywhere."""
        now = self._clock.now()
        await self._purge(now)
        inserted = await self._execute(
            "INSERT INTO ledger_uses (token_id, state, at, expires_at) "
            "VALUES (?, 'used', ?, ?) ON CONFLICT (token_id) DO NOTHING",
            (token_id, now.timestamp(), expires_at.timestamp()),
        )
        return inserted == 1

    async def release(self, token_id: str) -> None:
        """Forget a use (not a revocation)."""
        await self._execute(
            "DELETE FROM ledger_uses WHERE token_id = ? AND state = 'used'",
            (token_id,),
        )

    async def lookup(self, token_id: str) -> LedgerEntry | None:
        """The entry for ``token_id``, if any."""
        row = await self._run(
            lambda c: c.execute(
                "SELECT state, at, expires_at FROM ledger_uses WHERE token_id = ?",
                (token_id,),
            ).fetchone()
        )
        if row is None:
            return None
        state, at, expires_at = row
        return LedgerEntry(
            token_id=token_id,
            state="revoked" if state == "revoked" else "used",
            at=_instant(at),
            expires_at=_instant(expires_at),
        )

    async def revoke(self, token_id: str, *, expires_at: datetime) -> None:
        """Revoke ``token_id`` unless it was already used."""
        await self._execute(
            "INSERT INTO ledger_uses (token_id, state, at, expires_at) "
            "VALUES (?, 'revoked', ?, ?) ON CONFLICT (token_id) DO NOTHING",
            (token_id, self._clock.now().timestamp(), expires_at.timestamp()),
        )

    async def revoke_subject(
        self, subject: str, *, action: str, before: datetime, until: datetime
    ) -> None:
        """Revoke the subject's tokens issued before ``before``."""
        await self._execute(
            "INSERT INTO ledger_revocations (subject, action, revoked_before, until) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (subject, action) DO UPDATE SET "
            "revoked_before = max(revoked_before, excluded.revoked_before), "
            "until = max(until, excluded.until)",
            (subject, action, before.timestamp(), until.timestamp()),
        )

    async def is_subject_revoked(
        self, subject: str, *, action: str, issued_at: datetime
    ) -> bool:
        """Whether a revocation of the subject covers this token."""
        row = await self._run(
            lambda c: c.execute(
                "SELECT 1 FROM ledger_revocations WHERE subject = ? "
                "AND action IN (?, '') AND revoked_before > ? LIMIT 1",
                (subject, action, issued_at.timestamp()),
            ).fetchone()
        )
        return row is not None

    async def _purge(self, now: datetime) -> None:
        if now - self._last_purge < _PURGE_EVERY:
            return
        self._last_purge = now

        def purge(connection: sqlite3.Connection) -> None:
            stamp = now.timestamp()
            connection.execute("DELETE FROM ledger_uses WHERE expires_at < ?", (stamp,))
            connection.execute(
                "DELETE FROM ledger_revocations WHERE until < ?", (stamp,)
            )

        await self._run(purge)
