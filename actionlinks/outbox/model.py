"""The outbox's records: a stored message, its deliveries and their attempts.

A :class:`Message` is what was accepted, kept as the exact bytes that will be
sent (a webhook body; an e-mail later), under one id that every attempt
carries. A :class:`Delivery` is that message on its way to one destination: it
is ``pending`` until an attempt succeeds (``delivered``) or the schedule is
spent or the destination refuses it for good (``failed``, the dead letter).
Each :class:`Attempt` is kept, with what the destination answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from datetime import datetime, timedelta

DeliveryState = Literal["pending", "delivered", "failed"]
MessageState = Literal["pending", "delivered", "failed", "none"]

RESPONSE_EXCERPT = 1024
"""At most this many characters of a destination's answer are kept."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """An accepted message: its id, channel, kind and the exact bytes to send.

    Attributes:
        message_id: the one id every attempt carries (``webhook-id``).
        channel: who delivers it (``webhook``).
        kind: what it is about (the event type).
        body: the exact bytes sent on every attempt.
        created_at: when it was accepted.
    """

    message_id: str
    channel: str
    kind: str
    body: bytes = field(repr=False)
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One try at a delivery and what came of it.

    Attributes:
        at: when it started.
        latency: how long it took.
        status: the destination's status code (``None`` without an answer).
        response: the start of the answer (at most ``RESPONSE_EXCERPT``).
        error: why it failed without an answer, or why it is refused.
    """

    at: datetime
    latency: timedelta
    status: int | None = None
    response: str = ""
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """A message on its way to one destination.

    Attributes:
        delivery_id: the outbox's id of this delivery.
        message: the message.
        destination: where it goes (an endpoint id).
        state: ``pending``, ``delivered`` or ``failed``.
        attempts: how many attempts were made, ever.
        schedule_start: ``attempts`` when the schedule last began (at the
            first attempt, or at a redelivery): the schedule's position is
            ``attempts - schedule_start``.
        next_attempt_at: when the next attempt is due (pending only).
        history: the attempts, oldest first (filled in when read for people).
    """

    delivery_id: int
    message: Message
    destination: str
    state: DeliveryState = "pending"
    attempts: int = 0
    schedule_start: int = 0
    next_attempt_at: datetime | None = None
    history: tuple[Attempt, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecord:
    """A message and every delivery of it, as shown to people."""

    message: Message
    deliveries: tuple[Delivery, ...]

    @property
    def state(self) -> MessageState:
        """``pending`` while one is pending; else ``failed`` if one failed."""
        states = {d.state for d in self.deliveries}
        if not states:
            return "none"
        if "pending" in states:
            return "pending"
        return "failed" if "failed" in states else "delivered"


def excerpt(text: str) -> str:
    """The part of a destination's answer that is kept."""
    return text[:RESPONSE_EXCERPT]
