"""Time, injected: the only module that reads the wall clock."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """Something that tells the current time as an aware UTC datetime."""

    def now(self) -> datetime:
        """Return the current instant (aware, UTC)."""
        ...

    def micros(self) -> int:
        """Return the current instant as whole microseconds since the epoch."""
        ...


class SystemClock:
    """The real clock."""

    __slots__ = ()

    def now(self) -> datetime:
        """Return the current instant (aware, UTC)."""
        return datetime.now(UTC)

    def micros(self) -> int:
        """Return the current instant as whole microseconds since the epoch."""
        return time.time_ns() // 1000

    def __repr__(self) -> str:
        """Name the clock."""
        return "SystemClock()"


@functools.lru_cache(maxsize=4096)  # pages show the same few expiry minutes
def human_instant(instant: datetime) -> str:
    """``instant`` for people, to the minute, in UTC (``2026-12-02 09:30 UTC``)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_instant(instant: datetime) -> str:
    """``instant`` as RFC 3339 in UTC with a ``Z``, as every JSON output shows it."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")
