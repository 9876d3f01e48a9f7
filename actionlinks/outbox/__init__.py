"""The one durable queue: messages stored before they are acknowledged.

- :mod:`~actionlinks.outbox.model`: a message, its deliveries, their attempts.
- :mod:`~actionlinks.outbox.store`: the :class:`Outbox` protocol (claims with
  leases) that every store implements.
- :mod:`~actionlinks.outbox.schedule`: when the next attempt is due.
- :mod:`~actionlinks.outbox.worker`: the background worker that claims due
  deliveries and records every attempt.
"""

from actionlinks.outbox.model import (
    Attempt,
    Delivery,
    DeliveryState,
    Message,
    MessageRecord,
    MessageState,
)
from actionlinks.outbox.schedule import RetryPolicy
from actionlinks.outbox.store import Outbox
from actionlinks.outbox.worker import AttemptResult, OutboxWorker

__all__ = [
    "Attempt",
    "AttemptResult",
    "Delivery",
    "DeliveryState",
    "Message",
    "MessageRecord",
    "MessageState",
    "Outbox",
    "OutboxWorker",
    "RetryPolicy",
]
