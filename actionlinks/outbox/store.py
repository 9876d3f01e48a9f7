"""The :class:`Outbox` protocol: the one durable queue every channel shares.

Messages are stored with their deliveries in one write before anyone is told
they were accepted. Workers *claim* due deliveries with a lease (renewed while
they work, released when they stop); a claim left by a killed process lapses
when its lease ends and another worker takes the delivery over. Each attempt
is recorded with its outcome; a delivery whose claim was lost records the
attempt but no longer decides its state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime, timedelta

    from actionlinks.outbox.model import (
        Attempt,
        Delivery,
        DeliveryState,
        Message,
        MessageRecord,
        MessageState,
    )

MAX_LISTED = 100
"""The most messages one listing returns."""


class Outbox(Protocol):
    """Durable messages and their deliveries (see the module's text)."""

    async def enqueue(
        self, message: Message, destinations: Sequence[str], *, due_at: datetime
    ) -> bool:
        """Store ``message`` and a pending delivery to each destination at once.

        Returns:
            ``False``, writing nothing, when a message with its id exists.
        """
        ...

    async def claim(  # noqa: PLR0913 - one claim, several bounds
        self,
        *,
        channel: str,
        holder: str,
        limit: int,
        per_destination: int,
        skip: Collection[str],
        lease: timedelta,
    ) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries to ``holder``.

        At most ``per_destination`` claims (by any holder, in any process)
        live at once for one destination, none to those in ``skip``; the most
        overdue first.
        """
        ...

    async def extend(
        self, *, holder: str, delivery_ids: Collection[int], lease: timedelta
    ) -> None:
        """Renew ``holder``'s leases on ``delivery_ids``."""
        ...

    async def release(self, *, holder: str, delivery_ids: Collection[int]) -> None:
        """Give up ``holder``'s leases: the deliveries are due again at once."""
        ...

    async def record(
        self,
        delivery_id: int,
        *,
        holder: str,
        attempt: Attempt,
        state: DeliveryState,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Keep ``attempt``; set the state if ``holder`` still holds the lease.

        Returns:
            Whether the state was set (``False``: the lease was lost).
        """
        ...

    async def read(self, message_id: str) -> MessageRecord | None:
        """The message, its deliveries and every attempt."""
        ...

    async def list(
        self,
        *,
        channel: str,
        state: MessageState | None,
        limit: int,
        before: str | None,
    ) -> list[MessageRecord]:
        """``channel``'s messages newest first (deliveries without attempts).

        ``before`` is the id of the last message of the previous page.
        """
        ...

    async def redeliver(
        self, message_id: str, *, destinations: Collection[str] | None, at: datetime
    ) -> int:
        """Make the message's deliveries (to ``destinations``) pending again.

        Each starts the schedule again (``schedule_start``); the attempts
        made stay counted and in its history.
        One being attempted right now (claimed) is left to that attempt.

        Returns:
            How many deliveries are pending again.
        """
        ...

    async def fail_pending(self, destination: str, *, attempt: Attempt) -> int:
        """Fail every unclaimed pending delivery to ``destination``.

        Returns:
            How many failed.
        """
        ...

    async def next_due(self, channel: str) -> datetime | None:
        """When the soonest unclaimed pending delivery of ``channel`` is due.

        Claimed ones are left out: a lapsing claim is noticed by polling.
        """
        ...

    async def purge(self, *, channel: str, before: datetime) -> int:
        """Forget ``channel``'s messages created before ``before``, nothing pending.

        At most 1000 at a time; returns how many (call again while it is 1000).
        """
        ...
