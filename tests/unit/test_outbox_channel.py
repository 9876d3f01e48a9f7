"""A channel's view of the shared outbox: its own messages only; a lost write said."""

from __future__ import annotations

import pytest

from actionlinks.errors import (
    InvalidArgumentError,
    LedgerUnavailableError,
    NotFoundError,
)
from actionlinks.outbox import Message
from actionlinks.outbox.channel import ChannelView
from actionlinks.stores import MemoryStore


def message(clock, message_id, channel):
    return Message(
        message_id=message_id,
        channel=channel,
        kind="x.y",
        body=b"{}",
        created_at=clock.now(),
    )


async def test_a_view_reads_and_pages_its_channel_only(clock):
    """Another channel's id is not found and cannot page; an invalid id is
    never read."""
    outbox = MemoryStore(clock=clock).outbox
    hooks = ChannelView(outbox, "webhook", what="message", valid=lambda i: "!" not in i)
    await hooks.store(message(clock, "msg_1", "webhook"), ["ep"], due_at=clock.now())
    mail = message(clock, "em_1", "mail")
    await outbox.enqueue(mail, ["a@example.org"], due_at=clock.now())
    assert (await hooks.read("msg_1")).message.message_id == "msg_1"
    for unknown in ("em_1", "nope", "bad!id"):
        with pytest.raises(NotFoundError, match="no message with this id"):
            await hooks.read(unknown)
    with pytest.raises(InvalidArgumentError) as raised:
        await hooks.page(state=None, limit=10, before="em_1")
    assert raised.value.field == "before"
    page = await hooks.page(state=None, limit=500, before=None)
    assert [r.message.message_id for r in page] == ["msg_1"]


async def test_a_store_that_loses_what_it_took_is_unavailable(clock):
    """Stored but not read back: said as unavailable (send again), never a
    message that was not kept."""

    class Forgetful:
        def __init__(self, outbox):
            self.outbox = outbox

        async def enqueue(self, *args, **kwargs):
            return await self.outbox.enqueue(*args, **kwargs)

        async def read(self, message_id):
            return None

    view = ChannelView(
        Forgetful(MemoryStore(clock=clock).outbox),
        "mail",
        what="mail",
        valid=lambda i: True,
    )
    with pytest.raises(LedgerUnavailableError, match="the mail was not kept"):
        await view.store(
            message(clock, "em_2", "mail"), ["a@b.example"], due_at=clock.now()
        )
    again, stored = await ChannelView(
        MemoryStore(clock=clock).outbox, "mail", what="mail", valid=lambda i: True
    ).store(message(clock, "em_3", "mail"), ["a@b.example"], due_at=clock.now())
    assert stored
    assert again.message.message_id == "em_3"
