"""The outbox and the webhook endpoints in memory (``memory://``).

Nothing survives a restart; the contract suites prove it behaves as the
SQLite store does.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from actionlinks.outbox.model import Delivery, Message, MessageRecord

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence
    from datetime import datetime, timedelta

    from actionlinks.clock import Clock
    from actionlinks.outbox.model import Attempt, DeliveryState, MessageState
    from actionlinks.webhooks.endpoints import EndpointRecord, Room


class MemoryOutbox:
    """The outbox in memory.

    Args:
        clock: decides which deliveries are due and which leases lapsed.
    """

    __slots__ = ("_clock", "_deliveries", "_leases", "_messages", "_next_id")

    def __init__(self, *, clock: Clock) -> None:
        """Start empty."""
        self._clock = clock
        # Insertion order is acceptance order: newest last.
        self._messages: dict[str, tuple[Message, list[int]]] = {}
        self._deliveries: dict[int, Delivery] = {}
        self._leases: dict[int, tuple[str, datetime]] = {}
        self._next_id = 1

    def __repr__(self) -> str:
        """Count the messages."""
        return f"MemoryOutbox(messages={len(self._messages)})"

    async def enqueue(
        self, message: Message, destinations: Sequence[str], *, due_at: datetime
    ) -> bool:
        """Store ``message`` and its deliveries."""
        if message.message_id in self._messages:
            return False
        ids = []
        for destination in dict.fromkeys(destinations):
            self._deliveries[self._next_id] = Delivery(
                delivery_id=self._next_id,
                message=message,
                destination=destination,
                next_attempt_at=due_at,
            )
            ids.append(self._next_id)
            self._next_id += 1
        self._messages[message.message_id] = (message, ids)
        return True

    def _is_free(self, delivery_id: int, now: datetime) -> bool:
        lease = self._leases.get(delivery_id)
        return lease is None or lease[1] <= now

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
        """Lease up to ``limit`` due deliveries to ``holder``."""
        now = self._clock.now()
        due = sorted(
            (
                d
                for d in self._deliveries.values()
                if d.state == "pending"
                and d.message.channel == channel
                and d.next_attempt_at is not None
                and d.next_attempt_at <= now
                and d.destination not in skip
                and self._is_free(d.delivery_id, now)
            ),
            key=lambda d: (d.next_attempt_at, d.delivery_id),
        )
        taken: list[Delivery] = []
        counts: dict[str, int] = {}
        for delivery_id, (_, until) in self._leases.items():
            if until > now:
                destination = self._deliveries[delivery_id].destination
                counts[destination] = counts.get(destination, 0) + 1
        for delivery in due:
            if len(taken) == limit:
                break
            if counts.get(delivery.destination, 0) >= per_destination:
                continue
            counts[delivery.destination] = counts.get(delivery.destination, 0) + 1
            self._leases[delivery.delivery_id] = (holder, now + lease)
            taken.append(delivery)
        return taken

    async def extend(
        self, *, holder: str, delivery_ids: Collection[int], lease: timedelta
    ) -> None:
        """Renew ``holder``'s leases on ``delivery_ids``."""
        until = self._clock.now() + lease
        for delivery_id in delivery_ids:
            found = self._leases.get(delivery_id)
            if found is not None and found[0] == holder:
                self._leases[delivery_id] = (holder, until)

    async def release(self, *, holder: str, delivery_ids: Collection[int]) -> None:
        """Give up ``holder``'s leases on ``delivery_ids``."""
        for delivery_id in delivery_ids:
            found = self._leases.get(delivery_id)
            if found is not None and found[0] == holder:
                del self._leases[delivery_id]

    async def record(
        self,
        delivery_id: int,
        *,
        holder: str,
        attempt: Attempt,
        state: DeliveryState,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Keep ``attempt``; set the state if ``holder`` still holds the lease."""
        delivery = self._deliveries.get(delivery_id)
        if delivery is None:
            return False
        history = (*delivery.history, attempt)
        lease = self._leases.get(delivery_id)
        if delivery.state != "pending" or lease is None or lease[0] != holder:
            self._deliveries[delivery_id] = replace(delivery, history=history)
            return False
        del self._leases[delivery_id]
        self._deliveries[delivery_id] = replace(
            delivery,
            history=history,
            state=state,
            attempts=delivery.attempts + 1,
            next_attempt_at=next_attempt_at,
        )
        return True

    def _shown(self, delivery_id: int, *, history: bool) -> Delivery:
        delivery = self._deliveries[delivery_id]
        return replace(
            delivery,
            next_attempt_at=(
                delivery.next_attempt_at if delivery.state == "pending" else None
            ),
            history=delivery.history if history else (),
        )

    async def read(self, message_id: str) -> MessageRecord | None:
        """The message, its deliveries and every attempt."""
        found = self._messages.get(message_id)
        if found is None:
            return None
        message, ids = found
        deliveries = tuple(self._shown(i, history=True) for i in ids)
        return MessageRecord(message=message, deliveries=deliveries)

    async def list(
        self,
        *,
        channel: str,
        state: MessageState | None,
        limit: int,
        before: str | None,
    ) -> list[MessageRecord]:
        """Messages newest first, by state, after the page ending at ``before``."""
        ordered = list(reversed(self._messages))
        if before is not None:
            ordered = ordered[ordered.index(before) + 1 :] if before in ordered else []
        records = []
        for message_id in ordered:
            message, ids = self._messages[message_id]
            if message.channel != channel:
                continue
            deliveries = tuple(self._shown(i, history=False) for i in ids)
            record = MessageRecord(message=message, deliveries=deliveries)
            if state is None or record.state == state:
                records.append(record)
            if len(records) == limit:
                break
        return records

    async def redeliver(
        self, message_id: str, *, destinations: Collection[str] | None, at: datetime
    ) -> int:
        """Make the message's deliveries pending again, due at ``at``."""
        found = self._messages.get(message_id)
        now = self._clock.now()
        count = 0
        for delivery_id in found[1] if found else ():
            delivery = self._deliveries[delivery_id]
            in_flight = delivery.state == "pending" and not self._is_free(
                delivery_id, now
            )
            if not in_flight and (
                destinations is None or delivery.destination in destinations
            ):
                self._deliveries[delivery_id] = replace(
                    delivery,
                    state="pending",
                    schedule_start=delivery.attempts,
                    next_attempt_at=at,
                )
                self._leases.pop(delivery_id, None)
                count += 1
        return count

    async def fail_pending(self, destination: str, *, attempt: Attempt) -> int:
        """Fail every unclaimed pending delivery to ``destination``."""
        now = self._clock.now()
        count = 0
        for delivery_id, delivery in self._deliveries.items():
            if (
                delivery.destination == destination
                and delivery.state == "pending"
                and self._is_free(delivery_id, now)
            ):
                self._deliveries[delivery_id] = replace(
                    delivery,
                    state="failed",
                    attempts=delivery.attempts + 1,
                    next_attempt_at=None,
                    history=(*delivery.history, attempt),
                )
                count += 1
        return count

    async def next_due(self, channel: str) -> datetime | None:
        """When the soonest unclaimed pending delivery of ``channel`` is due."""
        now = self._clock.now()
        return min(
            (
                d.next_attempt_at
                for d in self._deliveries.values()
                if d.state == "pending"
                and d.message.channel == channel
                and d.next_attempt_at is not None
                and self._is_free(d.delivery_id, now)
            ),
            default=None,
        )

    async def purge(self, *, channel: str, before: datetime) -> int:
        """Forget ``channel``'s messages created before ``before``, nothing pending."""
        gone = [
            message_id
            for message_id, (message, ids) in self._messages.items()
            if message.channel == channel
            and message.created_at < before
            and all(self._deliveries[i].state != "pending" for i in ids)
        ][:1000]
        for message_id in gone:
            for delivery_id in self._messages.pop(message_id)[1]:
                del self._deliveries[delivery_id]
                self._leases.pop(delivery_id, None)
        return len(gone)

    def row_count(self) -> int:
        """How many messages and deliveries it holds (storage stays bounded)."""
        return len(self._messages) + len(self._deliveries)


class MemoryEndpointStore:
    """Webhook endpoints in memory."""

    __slots__ = ("_endpoints",)

    def __init__(self) -> None:
        """Start empty."""
        self._endpoints: dict[str, EndpointRecord] = {}

    def __repr__(self) -> str:
        """Count the endpoints."""
        return f"MemoryEndpointStore(endpoints={len(self._endpoints)})"

    async def add(self, endpoint: EndpointRecord, *, room: Room | None = None) -> None:
        """Keep a new endpoint (if ``room`` lets it)."""
        if room is not None:
            room(list(self._endpoints.values()))
        self._endpoints[endpoint.endpoint_id] = endpoint

    async def get(self, endpoint_id: str) -> EndpointRecord | None:
        """The endpoint ``endpoint_id``, or ``None``."""
        return self._endpoints.get(endpoint_id)

    async def all(self) -> list[EndpointRecord]:
        """Every endpoint, oldest first."""
        return list(self._endpoints.values())

    async def update(
        self,
        endpoint_id: str,
        change: Callable[[EndpointRecord], EndpointRecord],
        *,
        room: Room | None = None,
    ) -> EndpointRecord | None:
        """Apply ``change`` (if ``room`` lets it); the result, or ``None``."""
        found = self._endpoints.get(endpoint_id)
        if found is None:
            return None
        if room is not None:
            room(list(self._endpoints.values()))
        self._endpoints[endpoint_id] = changed = change(found)
        return changed
