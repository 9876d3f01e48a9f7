"""Link status in the PostgreSQL database (the service's :class:`LinkStore`).

Views and rejections are written behind, in batches (see
:mod:`actionlinks.stores.link_buffer`); every host writes its own, and every
host reads what all of them wrote.
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
    from datetime import datetime

    from actionlinks.clock import Clock
    from actionlinks.links import LinkStatus
    from actionlinks.stores.link_buffer import PendingWrites
    from actionlinks.stores.pg_db import Connection, PgDatabase
    from actionlinks.tokens import ActionClaims

SCHEMA = """
CREATE TABLE link_records (
    token_id text PRIMARY KEY,
    action text NOT NULL,
    subject text NOT NULL,
    issued_us bigint NOT NULL,
    expires_us bigint NOT NULL,
    viewed_us bigint,
    used_us bigint,
    revoked_us bigint
);
CREATE INDEX link_records_subject ON link_records (subject, action);
CREATE INDEX link_records_expiry ON link_records (expires_us);
CREATE TABLE link_rejections (
    token_id text NOT NULL REFERENCES link_records (token_id) ON DELETE CASCADE,
    reason text NOT NULL,
    count integer NOT NULL,
    first_us bigint NOT NULL,
    last_us bigint NOT NULL,
    PRIMARY KEY (token_id, reason)
);
CREATE TABLE rejection_counts (
    hour_us bigint NOT NULL,
    reason text NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (hour_us, reason)
);
"""

_RECORD_VIEW = (
    "UPDATE link_records SET viewed_us = $1 WHERE token_id = $2 AND viewed_us IS NULL"
)
_RECORD_REJECTION = (
    "INSERT INTO link_rejections AS r (token_id, reason, count, first_us, last_us) "
    "SELECT $1::text, $2::text, $3::integer, $4::bigint, $5::bigint WHERE EXISTS "
    "(SELECT 1 FROM link_records WHERE token_id = $1) "
    "ON CONFLICT (token_id, reason) DO UPDATE SET count = r.count + excluded.count, "
    "last_us = greatest(r.last_us, excluded.last_us)"
)
_COUNT_REJECTIONS = (
    "INSERT INTO rejection_counts AS c (hour_us, reason, count) "
    "VALUES ($1, $2, $3) ON CONFLICT (hour_us, reason) "
    "DO UPDATE SET count = c.count + excluded.count"
)


class PgLinkStore:
    """Link status in the PostgreSQL database.

    Args:
        database: the database (its owner connects, migrates and closes it).
        clock: stamps each event and decides expiry.
    """

    __slots__ = ("_buffer", "_clock", "_database")

    def __init__(self, database: PgDatabase, *, clock: Clock) -> None:
        """Use the link tables of ``database``."""
        self._database = database
        self._clock = clock
        self._buffer = LinkBuffer(clock)

    def __repr__(self) -> str:
        """Name the database."""
        return f"PgLinkStore({self._database!r})"

    def _now(self) -> int:
        return micros(self._clock.now())

    async def issued(self, claims: ActionClaims) -> None:
        """Record a minted link."""
        await self._database.execute(
            "INSERT INTO link_records (token_id, action, subject, issued_us, "
            "expires_us) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_id) "
            "DO NOTHING",
            claims.token_id,
            claims.action,
            claims.subject,
            micros(claims.issued_at),
            micros(claims.expires_at),
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
        if pending is not None:
            await self._database.transaction(lambda c: _write(c, pending))

    async def used(self, token_id: str) -> None:
        """Record the (latest) use."""
        await self._database.execute(
            "UPDATE link_records SET used_us = $1 WHERE token_id = $2",
            self._now(),
            token_id,
        )

    async def released(self, token_id: str) -> None:
        """Forget a use whose handler failed."""
        await self._database.execute(
            "UPDATE link_records SET used_us = NULL WHERE token_id = $1", token_id
        )

    async def revoked(self, token_id: str) -> None:
        """Record a revocation of one link."""
        await self._database.execute(
            "UPDATE link_records SET revoked_us = $1 WHERE token_id = $2 "
            "AND revoked_us IS NULL",
            self._now(),
            token_id,
        )

    async def revoked_subject(
        self, subject: str, *, action: str | None, before: datetime
    ) -> None:
        """Record a revocation of a subject's earlier links."""
        await self._database.execute(
            "UPDATE link_records SET revoked_us = $1 WHERE subject = $2 "
            "AND ($3::text IS NULL OR action = $3) AND issued_us < $4 "
            "AND revoked_us IS NULL AND used_us IS NULL",
            self._now(),
            subject,
            action,
            micros(before),
        )

    async def status(self, token_id: str) -> LinkStatus | None:
        """The status of the link ``token_id``, or ``None`` if unknown.

        Raises:
            LedgerUnavailableError: the database failed.
        """
        await self.flush()
        row = await self._database.fetchrow(
            f"SELECT {STATUS_COLUMNS} FROM link_records WHERE token_id = $1",  # noqa: S608 - constant columns
            token_id,
        )
        if row is None:
            return None
        attempts = await self._database.fetch(
            f"SELECT {REJECTION_COLUMNS} FROM link_rejections "  # noqa: S608 - constant columns
            "WHERE token_id = $1 ORDER BY last_us DESC LIMIT $2",
            token_id,
            SHOWN,
        )
        return link_status(token_id, row, attempts, clock=self._clock)

    async def rejection_counts(self, *, since: datetime) -> dict[str, int]:
        """Rejected attempts by reason since ``since`` (to the hour)."""
        await self.flush()
        rows = await self._database.fetch(
            "SELECT reason, sum(count) FROM rejection_counts WHERE hour_us >= $1 "
            "GROUP BY reason",
            hour_of(micros(since)),
        )
        return {str(reason): int(count) for reason, count in rows}


async def _write(connection: Connection, pending: PendingWrites) -> None:
    if pending.views:
        await connection.executemany(_RECORD_VIEW, pending.views)
    if pending.rejections:
        await connection.executemany(_RECORD_REJECTION, pending.rejections)
    if pending.hourly:
        await connection.executemany(_COUNT_REJECTIONS, pending.hourly)
    if pending.purge_before is not None:
        await connection.execute(
            "DELETE FROM link_records WHERE expires_us < $1", pending.purge_before
        )
        await connection.execute(
            "DELETE FROM rejection_counts WHERE hour_us < $1", pending.purge_before
        )
