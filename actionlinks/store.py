"""Link status: each link's life and every rejected attempt, in SQLite.

A link is issued, viewed, used, expired or revoked; each rejected attempt is
kept with its reason.

:class:`SqliteLinkStore` is the :class:`~actionlinks.actions.LinkJournal` of the
service; :meth:`SqliteLinkStore.status` answers ``GET /v1/links/{jti}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from actionlinks.actions import LinkJournal
from actionlinks.clock import format_instant

if TYPE_CHECKING:
    from actionlinks.clock import Clock
    from actionlinks.database import SqliteDatabase
    from actionlinks.tokens import ActionClaims

LinkState: TypeAlias = Literal["issued", "viewed", "used", "expired", "revoked"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS links (
    token_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    viewed_at REAL,
    used_at REAL,
    revoked_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_subject ON links (subject, action);
CREATE TABLE IF NOT EXISTS link_attempts (
    id INTEGER PRIMARY KEY,
    token_id TEXT,
    action TEXT,
    at REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS link_attempts_token ON link_attempts (token_id);
"""
_ATTEMPTS_SHOWN = 50
_VIEWS_BATCH = 64
_VIEWS_EVERY = timedelta(seconds=1)
_RECORD_VIEW = "UPDATE links SET viewed_at = ? WHERE token_id = ? AND viewed_at IS NULL"


def _instant(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedAttempt:
    """One rejected use of a link."""

    at: datetime
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStatus:
    """What is known about one link."""

    token_id: str
    action: str
    subject: str
    state: LinkState
    issued_at: datetime
    expires_at: datetime
    viewed_at: datetime | None
    used_at: datetime | None
    revoked_at: datetime | None
    rejected: tuple[RejectedAttempt, ...]


class LinkStore(LinkJournal, Protocol):
    """A journal of links that can also answer what it knows about one."""

    async def status(self, token_id: str) -> LinkStatus | None:
        """The status of the link ``token_id``, or ``None`` if unknown."""
        ...


class SqliteLinkStore:
    """Link status in the SQLite database.

    Views are written behind, in batches (every 64 views or every second, and
    before any status is read): scanners open a link many times, and a write
    per view would cost more than everything else the page does. A crash may
    lose the last second of "viewed" stamps, never a use or a revocation.

    Args:
        database: the open database (its owner closes it).
        clock: stamps each event and decides expiry.
    """

    __slots__ = ("_clock", "_database", "_last_flush", "_pending_views")

    def __init__(self, database: SqliteDatabase, *, clock: Clock) -> None:
        """Create the tables if needed."""
        database.create_schema(_SCHEMA)
        self._database = database
        self._clock = clock
        self._pending_views: dict[str, float] = {}
        self._last_flush = clock.now()

    def __repr__(self) -> str:
        """Name the database."""
        return f"SqliteLinkStore({self._database!r})"

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def issued(self, claims: ActionClaims) -> None:
        """Record a minted link."""
        await self._database.execute(
            "INSERT INTO links (token_id, action, subject, issued_at, expires_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (token_id) DO NOTHING",
            (
                claims.token_id,
                claims.action,
                claims.subject,
                claims.issued_at.timestamp(),
                claims.expires_at.timestamp(),
            ),
        )

    async def viewed(self, token_id: str) -> None:
        """Record a view of the confirmation page (written behind, in batches)."""
        self._pending_views.setdefault(token_id, self._now())
        if (
            len(self._pending_views) >= _VIEWS_BATCH
            or self._clock.now() - self._last_flush >= _VIEWS_EVERY
        ):
            await self.flush()

    async def flush(self) -> None:
        """Write the pending views.

        Raises:
            LedgerUnavailableError: the database failed (the views are dropped).
        """
        rows = self._take_views()
        if rows:
            await self._database.run(lambda c: c.executemany(_RECORD_VIEW, rows))

    def flush_now(self) -> None:
        """Write the pending views from synchronous code (at shutdown)."""
        rows = self._take_views()
        if rows:
            self._database.run_now(lambda c: c.executemany(_RECORD_VIEW, rows))

    def _take_views(self) -> list[tuple[float, str]]:
        pending, self._pending_views = self._pending_views, {}
        self._last_flush = self._clock.now()
        return [(at, token_id) for token_id, at in pending.items()]

    async def used(self, token_id: str) -> None:
        """Record the (latest) use."""
        await self._database.execute(
            "UPDATE links SET used_at = ? WHERE token_id = ?", (self._now(), token_id)
        )

    async def released(self, token_id: str) -> None:
        """Forget a use whose handler failed."""
        await self._database.execute(
            "UPDATE links SET used_at = NULL WHERE token_id = ?", (token_id,)
        )

    async def revoked(self, token_id: str) -> None:
        """Record a revocation of one link."""
        await self._database.execute(
            "UPDATE links SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL",
            (self._now(), token_id),
        )

    async def revoked_subject(
        self, subject: str, *, action: str | None, before: datetime
    ) -> None:
        """Record a revocation of a subject's earlier links."""
        await self._database.execute(
            "UPDATE links SET revoked_at = ? WHERE subject = ? "
            "AND (? IS NULL OR action = ?) AND issued_at < ? AND revoked_at IS NULL "
            "AND used_at IS NULL",
            (self._now(), subject, action, action, before.timestamp()),
        )

    async def rejected(
        self, *, token_id: str | None, action: str | None, reason: str
    ) -> None:
        """Record a rejected attempt."""
        await self._database.execute(
            "INSERT INTO link_attempts (token_id, action, at, reason) "
            "VALUES (?, ?, ?, ?)",
            (token_id, action, self._now(), reason),
        )

    async def status(self, token_id: str) -> LinkStatus | None:
        """The status of the link ``token_id``, or ``None`` if unknown.

        Raises:
            LedgerUnavailableError: the database failed.
        """
        await self.flush()
        row = await self._database.fetchone(
            "SELECT action, subject, issued_at, expires_at, viewed_at, used_at, "
            "revoked_at FROM links WHERE token_id = ?",
            (token_id,),
        )
        if row is None:
            return None
        action, subject, issued, expires, viewed, used, revoked = row
        attempts = await self._database.fetchall(
            "SELECT at, reason FROM link_attempts WHERE token_id = ? "
            "ORDER BY id DESC LIMIT ?",
            (token_id, _ATTEMPTS_SHOWN),
        )
        state: LinkState
        if used is not None:
            state = "used"
        elif revoked is not None:
            state = "revoked"
        elif expires <= self._now():
            state = "expired"
        elif viewed is not None:
            state = "viewed"
        else:
            state = "issued"
        return LinkStatus(
            token_id=token_id,
            action=action,
            subject=subject,
            state=state,
            issued_at=datetime.fromtimestamp(issued, UTC),
            expires_at=datetime.fromtimestamp(expires, UTC),
            viewed_at=_instant(viewed),
            used_at=_instant(used),
            revoked_at=_instant(revoked),
            rejected=tuple(
                RejectedAttempt(at=datetime.fromtimestamp(at, UTC), reason=reason)
                for at, reason in attempts
            ),
        )

    async def rejection_counts(self) -> dict[str, int]:
        """Rejected attempts by reason, for metrics."""
        rows = await self._database.fetchall(
            "SELECT reason, count(*) FROM link_attempts GROUP BY reason"
        )
        return {str(reason): int(count) for reason, count in rows}


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else format_instant(instant)


def status_json(status: LinkStatus) -> dict[str, Any]:
    """The JSON form of a link's status."""
    return {
        "jti": status.token_id,
        "action": status.action,
        "sub": status.subject,
        "state": status.state,
        "issued_at": _iso(status.issued_at),
        "expires_at": _iso(status.expires_at),
        "viewed_at": _iso(status.viewed_at),
        "used_at": _iso(status.used_at),
        "revoked_at": _iso(status.revoked_at),
        "rejected_attempts": [
            {"at": _iso(a.at), "reason": a.reason} for a in status.rejected
        ],
    }
