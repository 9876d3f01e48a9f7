"""Views and rejections written behind, in batches, for the SQL link stores.

Scanners open a link many times and attackers send garbage, and a write per
request would cost more than everything else the page does. So views and
rejections wait here, and are written every :data:`PENDING_LIMIT` events or
every :data:`FLUSH_EVERY`, and before any status is read. A crash may lose the
last second of view stamps and rejection counts, never a use or a revocation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from actionlinks.links import LinkStatus, RejectedAttempts, link_state
from actionlinks.stores.rows import instant, micros

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actionlinks.clock import Clock

PENDING_LIMIT = 256
"""Pending views and rejections written at once, at the latest."""
FLUSH_EVERY = timedelta(seconds=1)
"""Pending views and rejections are written at least this often."""
LINK_HISTORY = timedelta(days=30)
"""How long the status of an expired link, and rejection counts, are kept."""
SHOWN = 50
"""The most kinds of rejected attempts a link's status lists."""
_PURGE_EVERY = timedelta(hours=1)
_FLUSH_EVERY_US = FLUSH_EVERY // timedelta(microseconds=1)
_HOUR_US = 3_600_000_000

STATUS_COLUMNS = (
    "action, subject, issued_us, expires_us, viewed_us, used_us, revoked_us"
)
REJECTION_COLUMNS = "reason, count, first_us, last_us"


@dataclass(slots=True)
class _Tally:
    count: int
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class PendingWrites:
    """What a flush writes, as rows of values (instants in microseconds)."""

    views: list[tuple[int, str]]
    """``(viewed_us, token_id)``: the first view of each link."""
    rejections: list[tuple[str, str, int, int, int]]
    """``(token_id, reason, count, first_us, last_us)`` for known tokens."""
    hourly: list[tuple[int, str, int]]
    """``(hour_us, reason, count)``: every rejection, counted by the hour."""
    purge_before: int | None
    """Forget links that expired before this instant (now and then)."""


class LinkBuffer:
    """The views and rejections not written yet.

    Args:
        clock: stamps each event and decides when a flush is due.
    """

    __slots__ = ("_clock", "_last_flush", "_last_purge", "_rejections", "_views")

    def __init__(self, clock: Clock) -> None:
        """Start empty."""
        self._clock = clock
        self._views: dict[str, int] = {}
        self._rejections: dict[tuple[str | None, str], _Tally] = {}
        self._last_flush = clock.micros()
        self._last_purge = clock.now()

    def viewed(self, token_id: str) -> bool:
        """Note a view; whether a flush is due."""
        now = self._clock.micros()
        if token_id not in self._views:
            self._views[token_id] = now
        return self._due(now)

    def rejected(self, token_id: str | None, reason: str) -> bool:
        """Count a rejected attempt; whether a flush is due."""
        now = self._clock.micros()
        tally = self._rejections.get((token_id, reason))
        if tally is None:
            self._rejections[token_id, reason] = _Tally(count=1, first=now, last=now)
        else:
            tally.count += 1
            tally.last = now
        return self._due(now)

    def _due(self, now: int) -> bool:
        return (
            len(self._views) + len(self._rejections) >= PENDING_LIMIT
            or now - self._last_flush >= _FLUSH_EVERY_US
        )

    def take(self) -> PendingWrites | None:
        """Hand over what is pending (``None``: nothing to write)."""
        now = self._clock.now()
        views, self._views = self._views, {}
        rejections, self._rejections = self._rejections, {}
        self._last_flush = micros(now)
        purge_before = None
        if now - self._last_purge >= _PURGE_EVERY:
            self._last_purge = now
            purge_before = micros(now - LINK_HISTORY)
        if not (views or rejections or purge_before):
            return None
        hourly: dict[tuple[int, str], int] = {}
        for (_, reason), t in rejections.items():
            key = (t.last - t.last % _HOUR_US, reason)
            hourly[key] = hourly.get(key, 0) + t.count
        # Sorted, so that processes writing the same rows lock them in one order.
        return PendingWrites(
            views=sorted(((at, t) for t, at in views.items()), key=lambda v: v[1]),
            rejections=sorted(
                (token_id, reason, t.count, t.first, t.last)
                for (token_id, reason), t in rejections.items()
                if token_id is not None
            ),
            hourly=sorted((hour, reason, n) for (hour, reason), n in hourly.items()),
            purge_before=purge_before,
        )


def hour_of(instant_us: int) -> int:
    """The start of the hour holding ``instant_us``."""
    return instant_us - instant_us % _HOUR_US


def link_status(
    token_id: str,
    row: Sequence[Any],
    attempts: Sequence[Sequence[Any]],
    *,
    clock: Clock,
) -> LinkStatus:
    """A status from :data:`STATUS_COLUMNS` and rows of :data:`REJECTION_COLUMNS`."""
    action, subject, issued, expires, viewed, used, revoked = row
    return LinkStatus(
        token_id=token_id,
        action=action,
        subject=subject,
        state=link_state(
            used=used is not None,
            revoked=revoked is not None,
            viewed=viewed is not None,
            expires_at=instant(expires),
            now=clock.now(),
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
