"""One channel's messages in the shared outbox, read and listed on their own.

Mail and webhooks share one outbox; each hub sees only its channel's
messages through a :class:`ChannelView`: an id of another channel is not
found, and cannot page a listing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionlinks.errors import (
    InvalidArgumentError,
    LedgerUnavailableError,
    NotFoundError,
)
from actionlinks.outbox.store import MAX_LISTED

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from actionlinks.outbox.model import Message, MessageRecord, MessageState
    from actionlinks.outbox.store import Outbox


class ChannelView:
    """Reads and lists ``channel``'s messages.

    Args:
        outbox: the shared outbox.
        channel: the channel (``webhook``, ``mail``).
        what: what a message is called in errors (``message``, ``mail``).
        valid: whether an id may be one of the channel's (never read if not).
    """

    __slots__ = ("_channel", "_outbox", "_valid", "_what")

    def __init__(
        self,
        outbox: Outbox,
        channel: str,
        *,
        what: str,
        valid: Callable[[str], bool],
    ) -> None:
        """Keep the outbox and the channel."""
        self._outbox = outbox
        self._channel = channel
        self._what = what
        self._valid = valid

    def __repr__(self) -> str:
        """Name the channel."""
        return f"ChannelView({self._channel!r})"

    async def store(
        self, message: Message, destinations: Sequence[str], *, due_at: datetime
    ) -> tuple[MessageRecord, bool]:
        """Store ``message``; what is stored under its id, and whether it is new.

        Raises:
            LedgerUnavailableError: the store lost what it just took.
        """
        stored = await self._outbox.enqueue(message, destinations, due_at=due_at)
        found = await self._outbox.read(message.message_id)
        if found is None:  # only a store that lost what it just took
            raise LedgerUnavailableError(
                f"the {self._what} was not kept; send it again"
            )
        return found, stored

    async def read(self, message_id: str) -> MessageRecord:
        """The message, its deliveries and every attempt.

        Raises:
            NotFoundError: no message of the channel has this id.
        """
        found = await self._outbox.read(message_id) if self._valid(message_id) else None
        if found is None or found.message.channel != self._channel:
            raise NotFoundError(f"no {self._what} with this id", what=self._what)
        return found

    async def page(
        self, *, state: MessageState | None, limit: int, before: str | None
    ) -> list[MessageRecord]:
        """Messages newest first, by state, after the one ``before``.

        Raises:
            InvalidArgumentError: ``before`` is not the id of one of them.
        """
        if before is not None:
            try:
                await self.read(before)
            except NotFoundError as exc:
                raise InvalidArgumentError(
                    f"'before' is not the id of a {self._what}", field="before"
                ) from exc
        return await self._outbox.list(
            channel=self._channel,
            state=state,
            limit=max(1, min(limit, MAX_LISTED)),
            before=before,
        )
