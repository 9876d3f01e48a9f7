"""The one-time ledger in PostgreSQL, shared by every process on every host.

``consume`` is one ``INSERT … ON CONFLICT … DO UPDATE … WHERE`` statement: the
row's unique key decides between concurrent callers on any connection, and
only a hold that lapsed (its process died) is taken over. Instants are integer
microseconds since the epoch, as in SQLite, read from the service's clock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from actionlinks.ledger import PURGE_EVERY, Hold
from actionlinks.stores.rows import held_entry, issue_values, ledger_entry, micros

if TYPE_CHECKING:
    from actionlinks.clock import Clock
    from actionlinks.ledger import Issue, LedgerEntry
    from actionlinks.stores.pg_db import Connection, PgDatabase

PURGE_BATCH = 10_000
"""The most expired entries one sweep deletes."""

SCHEMA = """
CREATE TABLE ledger_entries (
    token_id text PRIMARY KEY,
    state text NOT NULL CHECK (state IN ('used', 'revoked')),
    at_us bigint NOT NULL,
    expires_us bigint NOT NULL,
    revoked_us bigint,
    holder text,
    held_until_us bigint
);
CREATE INDEX ledger_entries_expiry ON ledger_entries (expires_us);
CREATE TABLE subject_revocations (
    subject text NOT NULL,
    action text NOT NULL,
    before_us bigint NOT NULL,
    until_us bigint NOT NULL,
    PRIMARY KEY (subject, action)
);
CREATE INDEX subject_revocations_expiry ON subject_revocations (until_us);
"""

_ENTRY = "state, at_us, expires_us, revoked_us, holder, held_until_us"
_TAKE = (
    "INSERT INTO ledger_entries AS e (token_id, state, at_us, expires_us, holder, "
    "held_until_us) SELECT $1, 'used', $2, $3, $4, $5 "
    # No revocation of the subject's links covers it (NULLs: nothing to check).
    "WHERE NOT EXISTS (SELECT 1 FROM subject_revocations WHERE subject = $6 "
    "AND action IN ($7, '') AND before_us > $8) ON CONFLICT (token_id) "
    "DO UPDATE SET at_us = excluded.at_us, holder = excluded.holder, "
    "held_until_us = excluded.held_until_us, "
    "expires_us = greatest(e.expires_us, excluded.expires_us) "
    # Only a hold that lapsed (its process died) is taken over.
    "WHERE e.state = 'used' AND e.holder IS NOT NULL "
    "AND e.held_until_us <= excluded.at_us AND e.revoked_us IS NULL"
)


class PgLedger:
    """A ledger in the PostgreSQL database.

    Args:
        database: the database (its owner connects, migrates and closes it).
        clock: stamps uses and drives purging of expired entries.
    """

    __slots__ = ("_clock", "_database", "_last_purge")

    def __init__(self, database: PgDatabase, *, clock: Clock) -> None:
        """Use the ledger tables of ``database``."""
        self._database = database
        self._clock = clock
        self._last_purge = datetime.min.replace(tzinfo=UTC)

    def __repr__(self) -> str:
        """Name the database."""
        return f"PgLedger({self._database!r})"

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
            token_id,
            micros(now),
            micros(expires_at),
            None if hold is None else hold.holder,
            None if hold is None else micros(hold.until),
            *issue_values(issue),
        )
        return taken == 1

    async def confirm(self, token_id: str, *, holder: str) -> None:
        """Make ``holder``'s held use final."""
        await self._database.execute(
            "UPDATE ledger_entries SET holder = NULL, held_until_us = NULL "
            "WHERE token_id = $1 AND holder = $2",
            token_id,
            holder,
        )

    async def extend(self, token_id: str, *, hold: Hold) -> bool:
        """Move the deadline of ``hold.holder``'s hold."""
        changed = await self._database.execute(
            "UPDATE ledger_entries SET held_until_us = $1 "
            "WHERE token_id = $2 AND holder = $3",
            micros(hold.until),
            token_id,
            hold.holder,
        )
        return changed == 1

    async def release(self, token_id: str, *, holder: str | None = None) -> None:
        """Forget a use, or turn it into the revocation that came meanwhile."""

        async def release(connection: Connection) -> None:
            await connection.execute(
                "DELETE FROM ledger_entries WHERE token_id = $1 AND state = 'used' "
                "AND revoked_us IS NULL AND holder IS NOT DISTINCT FROM $2",
                token_id,
                holder,
            )
            await connection.execute(
                "UPDATE ledger_entries SET state = 'revoked', at_us = revoked_us, "
                "holder = NULL, held_until_us = NULL WHERE token_id = $1 "
                "AND state = 'used' AND revoked_us IS NOT NULL "
                "AND holder IS NOT DISTINCT FROM $2",
                token_id,
                holder,
            )

        await self._database.transaction(release)

    async def lookup(self, token_id: str) -> LedgerEntry | None:
        """The entry for ``token_id``, if any."""
        row = await self._database.fetchrow(
            f"SELECT {_ENTRY} FROM ledger_entries WHERE token_id = $1",  # noqa: S608 - constant columns
            token_id,
        )
        return None if row is None else self._entry(token_id, *row)

    async def revoke(self, token_id: str, *, expires_at: datetime) -> None:
        """Revoke ``token_id``; a used one stays used, and revoked if released."""
        await self._database.execute(
            "INSERT INTO ledger_entries AS e (token_id, state, at_us, expires_us) "
            "VALUES ($1, 'revoked', $2, $3) ON CONFLICT (token_id) DO UPDATE SET "
            "revoked_us = coalesce(e.revoked_us, excluded.at_us), "
            "expires_us = greatest(e.expires_us, excluded.expires_us) "
            "WHERE e.state = 'used'",
            token_id,
            micros(self._clock.now()),
            micros(expires_at),
        )

    async def revoke_subject(
        self, subject: str, *, action: str, before: datetime, until: datetime
    ) -> None:
        """Revoke the subject's tokens issued before ``before``."""
        await self._database.execute(
            "INSERT INTO subject_revocations AS r (subject, action, before_us, "
            "until_us) VALUES ($1, $2, $3, $4) ON CONFLICT (subject, action) "
            "DO UPDATE SET before_us = greatest(r.before_us, excluded.before_us), "
            "until_us = greatest(r.until_us, excluded.until_us)",
            subject,
            action,
            micros(before),
            micros(until),
        )

    async def is_subject_revoked(
        self, subject: str, *, action: str, issued_at: datetime
    ) -> bool:
        """Whether a revocation of the subject covers this token."""
        row = await self._database.fetchrow(
            "SELECT 1 FROM subject_revocations WHERE subject = $1 "
            "AND action IN ($2, '') AND before_us > $3 LIMIT 1",
            subject,
            action,
            micros(issued_at),
        )
        return row is not None

    async def standing(
        self, token_id: str, *, subject: str, action: str, issued_at: datetime
    ) -> LedgerEntry | None:
        """The token's own entry, else its subject's revocation, in one query."""
        row = await self._database.fetchrow(
            "SELECT e.state, e.at_us, e.expires_us, e.revoked_us, e.holder, "
            "e.held_until_us, (SELECT max(before_us) FROM subject_revocations "
            "WHERE subject = $1 AND action IN ($2, '') AND before_us > $3) "
            "FROM (SELECT 1) AS one LEFT JOIN ledger_entries AS e "
            "ON e.token_id = $4",
            subject,
            action,
            micros(issued_at),
            token_id,
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
        return held_entry(token_id, *row, now=micros(self._clock.now()))

    async def _purge(self, now: datetime) -> None:
        """Sweep expired entries, a batch at a time, from one use a minute.

        A full batch means more are waiting: the next use sweeps again, so a
        backlog drains without one request deleting millions of rows.
        """
        if now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        stamp = micros(now)
        swept = await self._database.execute(
            "DELETE FROM ledger_entries WHERE token_id IN (SELECT token_id FROM "
            "ledger_entries WHERE expires_us < $1 LIMIT $2)",
            stamp,
            PURGE_BATCH,
        )
        await self._database.execute(
            "DELETE FROM subject_revocations WHERE until_us < $1", stamp
        )
        if swept == PURGE_BATCH:
            self._last_purge = datetime.min.replace(tzinfo=UTC)
