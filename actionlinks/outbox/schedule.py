"""When the next attempt is due: a retry schedule, jitter and ``Retry-After``.

The schedule lists the wait before each attempt, the first one included
(``0s`` sends at once): ``ACTIONLINKS_WEBHOOK_RETRY_SCHEDULE``. Each wait
after a failure grows by up to 10 % of random jitter, so that deliveries that
failed together do not all come back together. A destination's
``Retry-After`` is honoured when it asks for more than the schedule, up to
``RETRY_AFTER_CAP``; a delivery whose schedule is spent has failed.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

RETRY_AFTER_CAP = timedelta(hours=1)
"""The longest wait a destination's ``Retry-After`` can ask for."""
JITTER = 0.1
"""Each wait after a failure grows by up to this fraction, at random."""


def parse_retry_after(value: str | None, *, now: datetime) -> timedelta | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as a wait, or ``None``."""
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return timedelta(seconds=min(int(text[:9]), 10**8))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


class RetryPolicy:
    """Decides when a failed delivery is tried again, or that it has failed.

    Args:
        schedule: the wait before each attempt, the first included.
        rng: the source of jitter (seeded in tests).
    """

    __slots__ = ("_rng", "schedule")

    def __init__(
        self, schedule: Sequence[timedelta], *, rng: random.Random | None = None
    ) -> None:
        """Keep the schedule (at least one attempt)."""
        self.schedule = tuple(schedule) or (timedelta(0),)
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret

    def __repr__(self) -> str:
        """Show the number of attempts."""
        return f"RetryPolicy(attempts={len(self.schedule)})"

    @property
    def first(self) -> timedelta:
        """The wait before the first attempt."""
        return self.schedule[0]

    def next_attempt(
        self, *, now: datetime, attempts: int, retry_after: timedelta | None = None
    ) -> datetime | None:
        """When attempt ``attempts + 1`` is due after ``attempts`` failed.

        ``None`` when the schedule is spent.
        """
        if attempts >= len(self.schedule):
            return None
        wait = self.schedule[attempts]
        wait += wait * self._rng.uniform(0, JITTER)
        if retry_after is not None:
            wait = max(wait, min(retry_after, RETRY_AFTER_CAP))
        return now + wait
