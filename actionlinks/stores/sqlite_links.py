"""Link status in the SQLite database (the service's :class:`LinkStore`).

Views and rejections are written behind, in batches (every 256 events or every
second, and before any status is read): scanners open a link many times and
attackers send garbage, and a write per request would cost more than everything
else the page does, all through the one write lock. A crash may lose the last
second of view stamps and rejection counts, never a use or a revocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from actionlinks.links import LinkStatus, RejectedAttempts, link_state
from actionlinks.stores.sqlite_ledger import instant, micros

if TYPE_CHECKING:
    import sqlite3
    from datetime import datetime

    from actionlinks.clock import Clock
    from actionlinks.stores.sqlite_db import SqliteDatabase
    from actionlinks.tokens import ActionClaims

PENDING_LIMIT = 256
"""Pending views and rejections written at once, at the latest."""
FLUSH_EVERY = timedelta(seconds=1)
"""Pending views and rejections are written at least this often."""
LINK_HISTORY = timedelta(days=30)
"""How long the status of an expired link, and rejection counts, are kept."""
_PURGE_EVERY = timedelta(hours=1)
_HOUR_US = 3_600_000_000
_SHOWN = 50

_RECORD_VIEW = (
    "UPDATE link_records SET viewed_us = ? WHERE token_id = ? AND viewed_us IS NULL"
)
_RECORD_REJECTION = (
    "INSERT INTO link_rejections (token_id, reason, count, first_us, last_us) "
    "SELECT ?, ?, ?, ?, ? WHERE EXISTS "
    "(SELECT 1 FROM link_records WHERE token_id = ?) "
    "ON CONFLICT (token_id, reason) DO UPDATE SET count = count + excluded.count, "
    "last_us = max(last_us, excluded.last_us)"
)
_COUNT_REJECTIONS = (
    "INSERT INTO rejection_counts (hour_us, reason, count) VALUES (?, ?, ?) "
    "ON CONFLICT (hour_us, reason) DO UPDATE SET count = count + excluded.count"
)


@dataclass(slots=True)
class _Tally:
    count: int
    first: int
    last: int


class SqliteLinkStore:
    """Link status in the SQLite database.

    Args:
        database: the database (its owner connects, migrates and closes it).
        clock: stamps each event and decides expiry.
    """

    __slots__ = (
        "_clock",
        "_database",
        "_last_flush",
        "_last_purge",
        "_rejections",
        "_views",
    )

    def __init__(self, database: SqliteDatabase, *, clock: Clock) -> None:
        """Use the link tables of ``database``."""
        self._database = database
        self._clock = clock
        self._views: dict[str, int] = {}
        self._rejections: dict[tuple[str | None, str], _Tally] = {}
        self._last_flush = clock.now()
        self._last_purge = clock.now()

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
        self._views.setdefault(token_id, self._now())
        await self._flush_when_due()

    async def rejected(self, *, token_id: str | None, reason: str) -> None:
        """Count a rejected attempt (written behind)."""
        now = self._now()
        tally = self._rejections.get((token_id, reason))
        if tally is None:
            self._rejections[token_id, reason] = _Tally(count=1, first=now, last=now)
        else:
            tally.count += 1
            tally.last = now
        await self._flush_when_due()

    async def _flush_when_due(self) -> None:
        if (
            len(self._views) + len(self._rejections) >= PENDING_LIMIT
            or self._clock.now() - self._last_flush >= FLUSH_EVERY
        ):
            await self.flush()

    async def flush(self) -> None:
        """Write the pending views and rejections; purge old history now and then.

        Raises:
            LedgerUnavailableError: the database failed (what was pending is
                dropped: it is only statistics).
        """
        now = self._clock.now()
        views, self._views = self._views, {}
        rejections, self._rejections = self._rejections, {}
        self._last_flush = now
        purge_before = None
        if now - self._last_purge >= _PURGE_EVERY:
            self._last_purge = now
            purge_before = micros(now - LINK_HISTORY)
        if not (views or rejections or purge_before):
            return

        def write(connection: sqlite3.Connection) -> None:
            connection.executemany(
                _RECORD_VIEW, [(at, token_id) for token_id, at in views.items()]
            )
            connection.executemany(
                _RECORD_REJECTION,
                [
                    (token_id, reason, t.count, t.first, t.last, token_id)
                    for (token_id, reason), t in rejections.items()
                    if token_id is not None
                ],
            )
            hourly: dict[tuple[int, str], int] = {}
            for (_, reason), t in rejections.items():
                key = (t.last - t.last % _HOUR_US, reason)
                hourly[key] = hourly.get(key, 0) + t.count
            connection.executemany(
                _COUNT_REJECTIONS,
                [(hour, reason, count) for (hour, reason), count in hourly.items()],
            )
            if purge_before is not None:
                _purge(connection, purge_before)

        await self._database.run(write)

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
            "SELECT action, subject, issued_us, expires_us, viewed_us, used_us, "
            "revoked_us FROM link_records WHERE token_id = ?",
            (token_id,),
        )
        if row is None:
            return None
        action, subject, issued, expires, viewed, used, revoked = row
        attempts = await self._database.fetchall(
            "SELECT reason, count, first_us, last_us FROM link_rejections "
            "WHERE token_id = ? ORDER BY last_us DESC LIMIT ?",
            (token_id, _SHOWN),
        )
        return LinkStatus(
            token_id=token_id,
            action=action,
            subject=subject,
            state=link_state(
                used=used is not None,
                revoked=revoked is not None,
                viewed=viewed is not None,
                expires_at=instant(expires),
                now=self._clock.now(),
            ),
            issued_at=instant(issued),
            expires_at=instant(expires),
            viewed_at=None if viewed is None else instant(viewed),
            used_at=None if used is None else instant(used),
            revoked_at=None if revoked is None else instant(revoked),
            rejected=tuple(
                RejectedAttempts(
                    reason=reason,
                    count=count,
                    first_at=instant(first),
                    last_at=instant(last),
                )
                for reason, count, first, last in attempts
            ),
        )

    async def rejection_counts(self, *, since: datetime) -> dict[str, int]:
        """Rejected attempts by reason since ``since`` (to the hour)."""
        await self.flush()
        start = micros(since)
        rows = await self._database.fetchall(
            "SELECT reason, sum(count) FROM rejection_counts WHERE hour_us >= ? "
            "GROUP BY reason",
            (start - start % _HOUR_US,),
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
