"""An authentic inbound webhook, as :class:`WebhookVerifier` hands it on.

A slotted, read-only value: building it costs a fraction of a frozen
dataclass, and the ``datetime`` of its timestamp is made only when asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, TypeAlias

Scheme: TypeAlias = Literal["v1", "v1a", "jwt"]


class ReceivedWebhook:
    """An authentic webhook: its id, when it was sent, and how it was signed.

    Args:
        message_id: the sender's message id (the replay key).
        timestamp: when the sender signed it.
        scheme: what vouched for it.
        body: the exact body bytes (never shown: it may hold a password).
    """

    __slots__ = ("_body", "_message_id", "_scheme", "_seconds", "_timestamp")

    def __init__(
        self, *, message_id: str, timestamp: datetime, scheme: Scheme, body: bytes
    ) -> None:
        """A webhook from its parts."""
        self._message_id = message_id
        self._timestamp: datetime | None = timestamp
        self._seconds = 0
        self._scheme: Scheme = scheme
        self._body = body

    @classmethod
    def signed_at(
        cls, message_id: str, seconds: int, scheme: Scheme, body: bytes
    ) -> ReceivedWebhook:
        """A webhook signed at ``seconds`` after the epoch (the verify hot path)."""
        webhook = object.__new__(cls)
        webhook._message_id = message_id
        webhook._timestamp = None
        webhook._seconds = seconds
        webhook._scheme = scheme
        webhook._body = body
        return webhook

    @property
    def message_id(self) -> str:
        """The sender's message id."""
        return self._message_id

    @property
    def timestamp(self) -> datetime:
        """When the sender signed it."""
        if self._timestamp is None:
            self._timestamp = datetime.fromtimestamp(self._seconds, UTC)
        return self._timestamp

    @property
    def scheme(self) -> Scheme:
        """What vouched for it: ``v1``, ``v1a`` or ``jwt``."""
        return self._scheme

    @property
    def body(self) -> bytes:
        """The exact body bytes."""
        return self._body

    def _key(self) -> tuple[str, datetime, str, bytes]:
        return (self._message_id, self.timestamp, self._scheme, self._body)

    def __eq__(self, other: object) -> bool:
        """Equal when every part is."""
        if not isinstance(other, ReceivedWebhook):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        """Hashed by every part."""
        return hash(self._key())

    def __repr__(self) -> str:
        """Id, time and scheme; never the body."""
        return (
            f"ReceivedWebhook(message_id={self._message_id!r}, "
            f"timestamp={self.timestamp!r}, scheme={self._scheme!r})"
        )
