"""Link status in the SQLite database (the service's :class:`LinkStore`).

Views and rejections are written behind, in batches (see
:mod:`actionlinks.stores.link_buffer`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionlinks.stores.link_buffer import (
    REJECTION_COLUMNS,
    SHOWN,
    STATUS_COLUMNS,
    LinkBuffer,
    hour_of,
    link_status,
)
from actionlinks.stores.rows import micros

if TYPE_CHECKING:
    import sqlite3
    from datetime import datetime

    from actionlinks.clock import Clock
    from actionlinks.links import LinkStatus
    from actionlinks.stores.sqlite_db import SqliteDatabase
    from actionlinks.tokens import ActionClaims

_RECORD_VIEW = (
    "UPDATE link_records SET viewed_us = ? WHERE token_id = ? AND viewed_us IS NULL"
)
_RECORD_REJECTION = (
    "INSERT INTO link_rejections (token_id, reason, count, first_us, last_us) "
    "SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS "
    "(SELECT 1 FROM link_records WHERE token_id = ?1) "
    "ON CONFLICT (token_id, reason) DO UPDATE SET count = count + excluded.count, "
    "last_us = max(last_us, excluded.last_us)"
)
_COUNT_REJECTIONS = (
    "INSERT INTO rejection_counts (hour_us, reason, count) VALUES (?, ?, ?) "
    "ON CONFLICT (hour_us, reason) DO UPDATE SET count = count + excluded.count"
)


class SqliteLinkStore:
    """Link status in the SQLite database.

    Args:
        database: the database (its owner connects, migrates and closes it).
        clock: stamps each event and decides expiry.
    """

    __slots__ = ("_buffer", "_clock", "_database")

    def __init__(self, database: SqliteDatabase, *, clock: Clock) -> None:
        """Use the link tables of ``database``."""
        self._database = database
        self._clock = clock
        self._buffer = LinkBuffer(clock)

    def __repr__(self) -> str:
        """Name the database."""
        return f"SqliteLinkStore({self._database!r})"

    def _now(self) -> int:
        return micros(self._clock.now())

    async def issued(self, claims: ActionClaims) -> None:
        """Record a minted link."""
        await self._database.execute(
            "INSERT INTO link_records (token_id, action, subject, issued_us, "
            "expires_us) VALUES (?, ?, ?, ?, ?) ON CONFLICT (token_id) DO NOTHING",
            (
                claims.token_id,
                claims.action,
                claims.subject,
                micros(claims.issued_at),
                micros(claims.expires_at),
            ),
        )

    async def viewed(self, token_id: str) -> None:
        """Record a view of the confirmation page (written behind)."""
        if self._buffer.viewed(token_id):
            await self.flush()

    async def rejected(self, *, token_id: str | None, reason: str) -> None:
        """Count a rejected attempt (written behind)."""
        if self._buffer.rejected(token_id, reason):
            await self.flush()

    async def flush(self) -> None:
        """Write the pending views and rejections; purge old history now and then.

        Raises:
            LedgerUnavailableError: the database failed (what was pending is
                dropped: it is only statistics).
        """
        pending = self._buffer.take()
        if pending is None:
            return

        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(_RECORD_VIEW, pending.views)
            connection.executemany(_RECORD_REJECTION, pending.rejections)
            connection.executemany(_COUNT_REJECTIONS, pending.hourly)
            if pending.purge_before is not None:
                _purge(connection, pending.purge_before)

        # One transaction, at once; a purge (hourly) may sweep many rows.
        await self._database.transaction(write, inline=pending.purge_before is None)

    async def used(self, token_id: str) -> None:
        """Record the (latest) use."""
        await self._database.execute(
            "UPDATE link_records SET used_us = ? WHERE token_id = ?",
            (self._now(), token_id),
        )

    async def released(self, token_id: str) -> None:
        """Forget a use whose handler failed."""
        await self._database.execute(
            "UPDATE link_records SET used_us = NULL WHERE token_id = ?", (token_id,)
        )

    async def revoked(self, token_id: str) -> None:
        """Record a revocation of one link."""
        await self._database.execute(
            "UPDATE link_records SET revoked_us = ? WHERE token_id = ? "
            "AND revoked_us IS NULL",
            (self._now(), token_id),
        )

    async def revoked_subject(
        self, subject: str, *, action: str | None, before: datetime
    ) -> None:
        """Record a revocation of a subject's earlier links."""
        await self._database.execute(
            "UPDATE link_records SET revoked_us = ? WHERE subject = ? "
            "AND (? IS NULL OR action = ?) AND issued_us < ? AND revoked_us IS NULL "
            "AND used_us IS NULL",
            (self._now(), subject, action, action, micros(before)),
        )

    async def status(self, token_id: str) -> LinkStatus | None:
        """The status of the link ``token_id``, or ``None`` if unknown.

        Raises:
            LedgerUnavailableError: the database failed.
        """
        await self.flush()
        row = await self._database.fetchone(
            f"SELECT {STATUS_COLUMNS} FROM link_records WHERE token_id = ?",  # noqa: S608 - constant columns
            (token_id,),
        )
        if row is None:
            return None
        attempts = await self._database.fetchall(
            f"SELECT {REJECTION_COLUMNS} FROM link_rejections "  # noqa: S608 - constant columns
            "WHERE token_id = ? ORDER BY last_us DESC LIMIT ?",
            (token_id, SHOWN),
        )
        return link_status(token_id, row, attempts, clock=self._clock)

    async def rejection_counts(self, *, since: datetime) -> dict[str, int]:
        """Rejected attempts by reason since ``since`` (to the hour)."""
        await self.flush()
        rows = await self._database.fetchall(
            "SELECT reason, sum(count) FROM rejection_counts WHERE hour_us >= ? "
            "GROUP BY reason",
            (hour_of(micros(since)),),
        )
        return {str(reason): int(count) for reason, count in rows}


def _purge(connection: sqlite3.Connection, before: int) -> None:
    connection.execute(
        "DELETE FROM link_rejections WHERE token_id IN "
        "(SELECT token_id FROM link_records WHERE expires_us < ?)",
        (before,),
    )
    connection.execute("DELETE FROM link_records WHERE expires_us < ?", (before,))
    connection.execute("DELETE FROM rejection_counts WHERE hour_us < ?", (before,))
