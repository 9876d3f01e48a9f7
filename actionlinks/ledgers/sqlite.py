"""The embedded default ledger, in the SQLite database.

``consume`` is one ``INSERT … ON CONFLICT DO NOTHING`` in autocommit mode, so it
is atomic across threads and across every process that opens the file.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from actionlinks.ledger import PURGE_EVERY, LedgerEntry

if TYPE_CHECKING:
    import sqlite3

    from actionlinks.clock import Clock
    from actionlinks.database import SqliteDatabase

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


def _instant(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class SqliteLedger:
    """A ledger in the SQLite database, shared by every process that opens it.

    Args:
        database: the open database (its owner closes it).
        clock: stamps uses and drives purging of expired entries.

    Raises:
        LedgerUnavailableError: the schema cannot be created.
    """

    __slots__ = ("_clock", "_database", "_last_purge")

    def __init__(self, database: SqliteDatabase, *, clock: Clock) -> None:
        """Create the ledger's tables if needed."""
        database.create_schema(_SCHEMA)
        self._database = database
        self._clock = clock
        self._last_purge = datetime.min.replace(tzinfo=UTC)

    def __repr__(self) -> str:
        """Name the database."""
        return f"SqliteLedger({self._database!r})"

    async def _execute(self, sql: str, parameters: tuple[object, ...]) -> int:
        return await self._database.execute(sql, parameters)

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
        row = await self._database.fetchone(
            "SELECT state, at, expires_at FROM ledger_uses WHERE token_id = ?",
            (token_id,),
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
        row = await self._database.fetchone(
            "SELECT 1 FROM ledger_revocations WHERE subject = ? "
            "AND action IN (?, '') AND revoked_before > ? LIMIT 1",
            (subject, action, issued_at.timestamp()),
        )
        return row is not None

    async def standing(
        self, token_id: str, *, subject: str, action: str, issued_at: datetime
    ) -> LedgerEntry | None:
        """The token's own entry, else its subject's revocation, in one query."""
        row = await self._database.fetchone(
            "SELECT u.state, u.at, u.expires_at, (SELECT max(revoked_before) "
            "FROM ledger_revocations WHERE subject = ? AND action IN (?, '') "
            "AND revoked_before > ?) FROM (SELECT 1) "
            "LEFT JOIN ledger_uses AS u ON u.token_id = ?",
            (subject, action, issued_at.timestamp(), token_id),
        )
        if row is None:  # pragma: no cover - the query always yields one row
            return None
        state, at, expires_at, revoked_before = row
        if state is not None:
            return LedgerEntry(
                token_id=token_id,
                state="revoked" if state == "revoked" else "used",
                at=_instant(at),
                expires_at=_instant(expires_at),
            )
        if revoked_before is None:
            return None
        return LedgerEntry(
            token_id=token_id,
            state="revoked",
            at=_instant(revoked_before),
            expires_at=_instant(revoked_before),
        )

    async def _purge(self, now: datetime) -> None:
        if now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now

        def purge(connection: sqlite3.Connection) -> None:
            stamp = now.timestamp()
            connection.execute("DELETE FROM ledger_uses WHERE expires_at < ?", (stamp,))
            connection.execute(
                "DELETE FROM ledger_revocations WHERE until < ?", (stamp,)
            )

        await self._database.run(purge)
