"""Public test doubles for applications that use actionlinks in their tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from actionlinks.errors import ConfigurationError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class FrozenClock:
    """A clock that stands still until told to move.

    Args:
        start: the instant it shows; must be aware.
    """

    __slots__ = ("_now",)

    def __init__(self, start: datetime) -> None:
        """Freeze the clock at ``start``."""
        if start.tzinfo is None:
            raise ConfigurationError("FrozenClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        """Return the frozen instant."""
        return self._now

    def micros(self) -> int:
        """Return the frozen instant as whole microseconds since the epoch."""
        return (self._now - _EPOCH) // _MICROSECOND

    def advance(self, delta: timedelta) -> None:
        """Move the clock by ``delta`` (may be negative)."""
        self._now += delta

    def __repr__(self) -> str:
        """Show the frozen instant."""
        return f"FrozenClock({self._now.isoformat()})"
