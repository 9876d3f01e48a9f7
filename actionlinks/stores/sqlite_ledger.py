"""The embedded default ledger, in the SQLite database.

``consume`` is one ``INSERT … ON CONFLICT DO NOTHING`` in autocommit mode, so it
is atomic across threads and across every process that opens the file. Instants
are integer microseconds since the epoch, so that a revocation and a mint in the
same second are still told apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from actionlinks.ledger import PURGE_EVERY, Hold
from actionlinks.stores.rows import held_entry, issue_values, ledger_entry, micros

if TYPE_CHECKING:
    import sqlite3

    from actionlinks.clock import Clock
    from actionlinks.ledger import Issue, LedgerEntry
    from actionlinks.stores.sqlite_db import SqliteDatabase


_ENTRY = "state, at_us, expires_us, revoked_us, holder, held_until_us"
_TAKE = (
    "INSERT INTO ledger_entries (token_id, state, at_us, expires_us, holder, "
    "held_until_us) SELECT ?, 'used', ?, ?, ?, ? "
    # No revocation of the subject's links covers it (NULLs: nothing to check).
    "WHERE NOT EXISTS (SELECT 1 FROM subject_revocations WHERE subject = ? "
    "AND action IN (?, '') AND before_us > ?) ON CONFLICT (token_id) DO UPDATE "
    "SET at_us = excluded.at_us, holder = excluded.holder, "
    "held_until_us = excluded.held_until_us, "
    "expires_us = max(expires_us, excluded.expires_us) "
    # Only a hold that lapsed (its process died) is taken over.
    "WHERE state = 'used' AND holder IS NOT NULL AND held_until_us <= excluded.at_us "
    "AND revoked_us IS NULL"
)


class SqliteLedger:
    """A ledger in the SQLite database, shared by every process that opens it.

    Args:
        database: the database (its owner connects, migrates and closes it).
        clock: stamps uses and drives purging of expired entries.
    """

    __slots__ = ("_clock", "_database", "_last_purge")

    def __init__(self, database: SqliteDatabase, *, clock: Clock) -> None:
        """Use the ledger tables of ``database``."""
        self._database = database
        self._clock = clock
        self._last_purge = datetime.min.replace(tzinfo=UTC)

    def __repr__(self) -> str:
        """Name the database."""
        return f"SqliteLedger({self._database!r})"

    async def consume(
        self,
        token_id: str,
        *,
        expires_at: datetime,
        hold: Hold | None = None,
        issue: Issue | None = None,
    ) -> bool:
        """Mark ``token_id`` used; ``True`` only for the first caller anywhere."""
        now = self._clock.now()
        await self._purge(now)
        taken = await self._database.execute(
            _TAKE,
            (
                token_id,
                micros(now),
                micros(expires_at),
                None if hold is None else hold.holder,
                None if hold is None else micros(hold.until),
                *issue_values(issue),
            ),
        )
        return taken == 1

    async def confirm(self, token_id: str, *, holder: str) -> None:
        """Make ``holder``'s held use final."""
        await self._database.execute(
            "UPDATE ledger_entries SET holder = NULL, held_until_us = NULL "
            "WHERE token_id = ? AND holder = ?",
            (token_id, holder),
        )

    async def extend(self, token_id: str, *, hold: Hold) -> bool:
        """Move the deadline of ``hold.holder``'s hold."""
        changed = await self._database.execute(
            "UPDATE ledger_entries SET held_until_us = ? "
            "WHERE token_id = ? AND holder = ?",
            (micros(hold.until), token_id, hold.holder),
        )
        return changed == 1

    async def release(self, token_id: str, *, holder: str | None = None) -> None:
        """Forget a use, or turn it into the revocation that came meanwhile."""

        def release(connection: sqlite3.Connection) -> None:
            # Two statements, each atomic. Between them the row is still 'used'
            # and held by this holder: nobody else can consume it meanwhile.
            connection.execute(
                "DELETE FROM ledger_entries WHERE token_id = ? AND state = 'used' "
                "AND revoked_us IS NULL AND holder IS ?",
                (token_id, holder),
            )
            connection.execute(
                "UPDATE ledger_entries SET state = 'revoked', at_us = revoked_us, "
                "holder = NULL, held_until_us = NULL WHERE token_id = ? "
                "AND state = 'used' AND revoked_us IS NOT NULL AND holder IS ?",
                (token_id, holder),
            )

        await self._database.run(release)

    async def lookup(self, token_id: str) -> LedgerEntry | None:
        """The entry for ``token_id``, if any."""
        row = await self._database.fetchone(
            f"SELECT {_ENTRY} FROM ledger_entries WHERE token_id = ?",  # noqa: S608 - constant columns
            (token_id,),
        )
        return None if row is None else self._entry(token_id, *row)

    async def revoke(self, token_id: str, *, expires_at: datetime) -> None:
        """Revoke ``token_id``; a used one stays used, and revoked if released."""
        now = micros(self._clock.now())
        await self._database.execute(
            "INSERT INTO ledger_entries (token_id, state, at_us, expires_us) "
            "VALUES (?, 'revoked', ?, ?) ON CONFLICT (token_id) DO UPDATE SET "
            "revoked_us = coalesce(revoked_us, excluded.at_us), "
            "expires_us = max(expires_us, excluded.expires_us) "
            "WHERE state = 'used'",
            (token_id, now, micros(expires_at)),
        )

    async def revoke_subject(
        self, subject: str, *, action: str, before: datetime, until: datetime
    ) -> None:
        """Revoke the subject's tokens issued before ``before``."""
        await self._database.execute(
            "INSERT INTO subject_revocations (subject, action, before_us, until_us) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (subject, action) DO UPDATE SET "
            "before_us = max(before_us, excluded.before_us), "
            "until_us = max(until_us, excluded.until_us)",
            (subject, action, micros(before), micros(until)),
        )

    async def is_subject_revoked(
        self, subject: str, *, action: str, issued_at: datetime
    ) -> bool:
        """Whether a revocation of the subject covers this token."""
        row = await self._database.fetchone(
            "SELECT 1 FROM subject_revocations WHERE subject = ? "
            "AND action IN (?, '') AND before_us > ? LIMIT 1",
            (subject, action, micros(issued_at)),
        )
        return row is not None

    async def standing(
        self, token_id: str, *, subject: str, action: str, issued_at: datetime
    ) -> LedgerEntry | None:
        """The token's own entry, else its subject's revocation, in one query."""
        row = await self._database.fetchone(
            "SELECT e.state, e.at_us, e.expires_us, e.revoked_us, e.holder, "
            "e.held_until_us, (SELECT max(before_us) FROM subject_revocations "
            "WHERE subject = ? AND action IN (?, '') AND before_us > ?) "
            "FROM (SELECT 1) LEFT JOIN ledger_entries AS e ON e.token_id = ?",
            (subject, action, micros(issued_at), token_id),
        )
        if row is None:  # pragma: no cover - the query always yields one row
            return None
        *entry, revoked_before = row
        if entry[0] is not None:
            own = self._entry(token_id, *entry)
            if own is not None:
                return own
        if revoked_before is None:
            return None
        return ledger_entry(token_id, "revoked", revoked_before, revoked_before)

    def _entry(self, token_id: str, *row: Any) -> LedgerEntry | None:  # noqa: ANN401 - a row's columns
        """The entry as it stands now: a lapsed hold is no use at all."""
        return held_entry(token_id, *row, now=micros(self._clock.now()))

    async def _purge(self, now: datetime) -> None:
        if now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now

        def purge(connection: sqlite3.Connection) -> None:
            stamp = micros(now)
            connection.execute(
                "DELETE FROM ledger_entries WHERE expires_us < ?", (stamp,)
            )
            connection.execute(
                "DELETE FROM subject_revocations WHERE until_us < ?", (stamp,)
            )

        await self._database.run(purge, inline=False)  # may sweep many rows
