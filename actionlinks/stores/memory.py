"""Storage in this process's memory (``memory://``): tests and throwaway demos.

Nothing survives a restart and nothing is shared between processes; the same
contract suites as the SQLite store prove it behaves alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from actionlinks.ledger import MemoryLedger
from actionlinks.links import LinkStatus, RejectedAttempts, link_state
from actionlinks.stores.memory_outbox import MemoryEndpointStore, MemoryOutbox

if TYPE_CHECKING:
    from datetime import datetime

    from actionlinks.clock import Clock
    from actionlinks.tokens import ActionClaims


@dataclass(frozen=True, slots=True, kw_only=True)
class _Record:
    action: str
    subject: str
    issued_at: datetime
    expires_at: datetime
    viewed_at: datetime | None = None
    used_at: datetime | None = None
    revoked_at: datetime | None = None


class MemoryLinkStore:
    """Link status in memory.

    Args:
        clock: stamps each event and decides expiry.
    """

    __slots__ = ("_clock", "_counts", "_records", "_rejections")

    def __init__(self, *, clock: Clock) -> None:
        """Start empty."""
        self._clock = clock
        self._records: dict[str, _Record] = {}
        self._rejections: dict[tuple[str, str], RejectedAttempts] = {}
        self._counts: dict[tuple[datetime, str], int] = {}

    def __repr__(self) -> str:
        """Count the links."""
        return f"MemoryLinkStore(links={len(self._records)})"

    async def issued(self, claims: ActionClaims) -> None:
        """Record a minted link."""
        self._records.setdefault(
            claims.token_id,
            _Record(
                action=claims.action,
                subject=claims.subject,
                issued_at=claims.issued_at,
                expires_at=claims.expires_at,
            ),
        )

    async def viewed(self, token_id: str) -> None:
        """Record the first view."""
        record = self._records.get(token_id)
        if record is not None and record.viewed_at is None:
            self._records[token_id] = replace(record, viewed_at=self._clock.now())

    async def used(self, token_id: str) -> None:
        """Record the (latest) use."""
        record = self._records.get(token_id)
        if record is not None:
            self._records[token_id] = replace(record, used_at=self._clock.now())

    async def released(self, token_id: str) -> None:
        """Forget a use whose handler failed."""
        record = self._records.get(token_id)
        if record is not None:
            self._records[token_id] = replace(record, used_at=None)

    async def revoked(self, token_id: str) -> None:
        """Record a revocation of one link."""
        record = self._records.get(token_id)
        if record is not None and record.revoked_at is None:
            self._records[token_id] = replace(record, revoked_at=self._clock.now())

    async def revoked_subject(
        self, subject: str, *, action: str | None, before: datetime
    ) -> None:
        """Record a revocation of a subject's earlier links."""
        now = self._clock.now()
        for token_id, record in list(self._records.items()):
            if (
                record.subject == subject
                and action in (None, record.action)
                and record.issued_at < before
                and record.revoked_at is None
                and record.used_at is None
            ):
                self._records[token_id] = replace(record, revoked_at=now)

    async def rejected(self, *, token_id: str | None, reason: str) -> None:
        """Count a rejected attempt; keep it per link if the link exists."""
        now = self._clock.now()
        hour = now.replace(minute=0, second=0, microsecond=0)
        self._counts[hour, reason] = self._counts.get((hour, reason), 0) + 1
        if token_id is None or token_id not in self._records:
            return
        old = self._rejections.get((token_id, reason))
        self._rejections[token_id, reason] = RejectedAttempts(
            reason=reason,
            count=1 if old is None else old.count + 1,
            first_at=now if old is None else old.first_at,
            last_at=now,
        )

    async def flush(self) -> None:
        """Nothing is pending in memory."""

    async def status(self, token_id: str) -> LinkStatus | None:
        """The status of the link ``token_id``, or ``None`` if unknown."""
        record = self._records.get(token_id)
        if record is None:
            return None
        attempts = sorted(
            (a for (t, _), a in self._rejections.items() if t == token_id),
            key=lambda a: a.last_at,
            reverse=True,
        )
        return LinkStatus(
            token_id=token_id,
            action=record.action,
            subject=record.subject,
            state=link_state(
                used=record.used_at is not None,
                revoked=record.revoked_at is not None,
                viewed=record.viewed_at is not None,
                expires_at=record.expires_at,
                now=self._clock.now(),
            ),
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            viewed_at=record.viewed_at,
            used_at=record.used_at,
            revoked_at=record.revoked_at,
            rejected=tuple(attempts),
        )

    async def rejection_counts(self, *, since: datetime) -> dict[str, int]:
        """Rejected attempts by reason since ``since`` (to the hour)."""
        start = since.replace(minute=0, second=0, microsecond=0)
        totals: dict[str, int] = {}
        for (hour, reason), count in self._counts.items():
            if hour >= start:
                totals[reason] = totals.get(reason, 0) + count
        return totals

    def row_count(self) -> int:
        """How many records the store holds (to prove storage stays bounded)."""
        return len(self._records) + len(self._rejections) + len(self._counts)


class MemoryStore:
    """Ledger and link status in memory.

    Args:
        clock: stamps and expires entries.
    """

    __slots__ = ("_endpoints", "_ledger", "_links", "_outbox")

    def __init__(self, *, clock: Clock) -> None:
        """Start empty."""
        self._ledger = MemoryLedger(clock=clock)
        self._links = MemoryLinkStore(clock=clock)
        self._outbox = MemoryOutbox(clock=clock)
        self._endpoints = MemoryEndpointStore()

    def __repr__(self) -> str:
        """Say where the data lives."""
        return "MemoryStore()"

    @property
    def ledger(self) -> MemoryLedger:
        """The one-time-use ledger."""
        return self._ledger

    @property
    def links(self) -> MemoryLinkStore:
        """The link status store."""
        return self._links

    @property
    def outbox(self) -> MemoryOutbox:
        """The durable (here: in-memory) outbox."""
        return self._outbox

    @property
    def endpoints(self) -> MemoryEndpointStore:
        """The registered webhook endpoints."""
        return self._endpoints

    async def connect(self) -> None:
        """Nothing to connect to."""

    async def schema_version(self) -> int:
        """Always version 1: nothing is stored."""
        return 1

    async def migrate(self) -> int:
        """Nothing to migrate; version 1."""
        return 1

    async def check_health(self) -> None:
        """Memory always answers."""

    async def aclose(self) -> None:
        """Nothing to close; the data stays until the object is dropped."""
