"""OutboxContract and EndpointStoreContract: what every store backend proves.

A backend's test module subclasses them and provides a ``store`` fixture: a
connected, migrated :class:`~actionlinks.stores.Store` on the ``clock`` fixture.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from actionlinks.outbox import Attempt, Message
from actionlinks.webhooks.endpoints import EndpointRecord, EndpointSecret

LEASE = timedelta(seconds=20)
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def message(
    clock, message_id="msg_1", kind="user.created", body=b'{"a":1}', channel="webhook"
):
    return Message(
        message_id=message_id,
        channel=channel,
        kind=kind,
        body=body,
        created_at=clock.now(),
    )


def attempt(clock, status=503, error=None):
    return Attempt(
        at=clock.now(),
        latency=timedelta(milliseconds=3),
        status=status,
        response="busy",
        error=error,
    )


async def claim(outbox, holder="w1", limit=10, per_destination=10, skip=()):
    return await outbox.claim(
        channel="webhook",
        holder=holder,
        limit=limit,
        per_destination=per_destination,
        skip=skip,
        lease=LEASE,
    )


class OutboxContract:
    """Subclass with a ``store`` fixture."""

    @pytest.fixture
    def outbox(self, store):
        return store.outbox

    async def test_a_message_is_stored_with_one_delivery_per_destination(
        self, outbox, clock
    ):
        """enqueue keeps the exact body and one pending delivery per destination."""
        assert await outbox.enqueue(
            message(clock), ["ep_a", "ep_b", "ep_a"], due_at=clock.now()
        )
        record = await outbox.read("msg_1")
        assert record.message.body == b'{"a":1}'
        assert record.message.created_at == clock.now()
        assert [d.destination for d in record.deliveries] == ["ep_a", "ep_b"]
        assert {d.state for d in record.deliveries} == {"pending"}
        assert record.state == "pending"

    async def test_the_same_id_twice_stores_nothing_more(self, outbox, clock):
        """A second enqueue under a stored id is refused and writes nothing."""
        assert await outbox.enqueue(message(clock), ["ep_a"], due_at=clock.now())
        again = message(clock, body=b'{"other":2}')
        assert not await outbox.enqueue(again, ["ep_b"], due_at=clock.now())
        record = await outbox.read("msg_1")
        assert record.message.body == b'{"a":1}'
        assert [d.destination for d in record.deliveries] == ["ep_a"]

    async def test_a_message_without_destinations_is_kept_and_shown_as_none(
        self, outbox, clock
    ):
        """Nothing subscribed: the message is still stored, state none."""
        assert await outbox.enqueue(message(clock), [], due_at=clock.now())
        assert (await outbox.read("msg_1")).state == "none"

    async def test_only_due_deliveries_are_claimed(self, outbox, clock):
        """A delivery due later is not claimed until its time."""
        later = clock.now() + timedelta(seconds=5)
        await outbox.enqueue(message(clock), ["ep_a"], due_at=later)
        assert await claim(outbox) == []
        assert await outbox.next_due("webhook") == later
        clock.advance(timedelta(seconds=5))
        [taken] = await claim(outbox)
        assert taken.message.message_id == "msg_1"
        assert taken.message.body == b'{"a":1}'

    async def test_next_due_names_the_soonest_unclaimed_delivery(self, outbox, clock):
        """Claimed deliveries and other channels do not count; none: None."""
        assert await outbox.next_due("webhook") is None
        soon, later = clock.now(), clock.now() + timedelta(minutes=1)
        await outbox.enqueue(message(clock, "msg_1"), ["ep_a"], due_at=soon)
        await outbox.enqueue(message(clock, "msg_2"), ["ep_a"], due_at=later)
        assert await outbox.next_due("webhook") == soon
        assert await outbox.next_due("mail") is None
        await claim(outbox)
        assert await outbox.next_due("webhook") == later

    async def test_a_claimed_delivery_is_not_claimed_again_until_its_lease_lapses(
        self, outbox, clock
    ):
        """Two workers never hold one delivery; a dead worker's lease lapses."""
        await outbox.enqueue(message(clock), ["ep_a"], due_at=clock.now())
        assert len(await claim(outbox, holder="w1")) == 1
        assert await claim(outbox, holder="w2") == []
        clock.advance(LEASE - timedelta(seconds=1))
        assert await claim(outbox, holder="w2") == []
        clock.advance(timedelta(seconds=1))
        [taken] = await claim(outbox, holder="w2")
        assert taken.message.message_id == "msg_1"

    async def test_a_renewed_lease_holds(self, outbox, clock):
        """extend keeps a working worker's claim beyond the first lease."""
        await outbox.enqueue(message(clock), ["ep_a"], due_at=clock.now())
        [taken] = await claim(outbox, holder="w1")
        clock.advance(LEASE - timedelta(seconds=1))
        await outbox.extend(holder="w1", delivery_ids=[taken.delivery_id], lease=LEASE)
        clock.advance(timedelta(seconds=5))
        assert await claim(outbox, holder="w2") == []

    async def test_another_holder_cannot_renew_or_release_a_claim(self, outbox, clock):
        """Only the holder renews or gives back its lease."""
        await outbox.enqueue(message(clock), ["ep_a"], due_at=clock.now())
        [taken] = await claim(outbox, holder="w1")
        await outbox.release(holder="w2", delivery_ids=[taken.delivery_id])
        assert await claim(outbox, holder="w2") == []
        await outbox.release(holder="w1", delivery_ids=[taken.delivery_id])
        assert len(await claim(outbox, holder="w2")) == 1

    async def test_claims_respect_the_limit_per_destination_and_skip(
        self, outbox, clock
    ):
        """At most per_destination to one destination, none to skipped ones."""
        for number in range(5):
            await outbox.enqueue(
                message(clock, f"msg_{number}"), ["ep_a", "ep_b"], due_at=clock.now()
            )
        taken = await claim(outbox, limit=10, per_destination=2, skip=["ep_b"])
        assert [d.destination for d in taken] == ["ep_a", "ep_a"]
        taken = await claim(outbox, holder="w2", limit=3, per_destination=10)
        assert len(taken) == 3

    async def test_the_bound_per_destination_counts_every_holders_claims(
        self, outbox, clock
    ):
        """Two workers (two processes) together stay within per_destination."""
        for number in range(5):
            await outbox.enqueue(
                message(clock, f"msg_{number}"), ["ep_a"], due_at=clock.now()
            )
        assert len(await claim(outbox, holder="w1", per_destination=2)) == 2
        assert await claim(outbox, holder="w2", per_destination=2) == []
        clock.advance(LEASE)
        assert len(await claim(outbox, holder="w2", per_destination=2)) == 2

    async def test_concurrent_claims_never_hand_one_delivery_to_two_holders(
        self, outbox, clock
    ):
        """Eight workers claiming at once split 60 deliveries: each is leased
        to one holder, and no destination gets more than its bound."""
        for number in range(30):
            await outbox.enqueue(
                message(clock, f"msg_{number}"), ["ep_a", "ep_b"], due_at=clock.now()
            )
        claims = await asyncio.gather(
            *(
                claim(outbox, holder=f"w{n}", limit=5, per_destination=12)
                for n in range(8)
            )
        )
        taken = [d for held in claims for d in held]
        assert len({d.delivery_id for d in taken}) == len(taken) == 24
        for destination in ("ep_a", "ep_b"):
            assert sum(d.destination == destination for d in taken) <= 12

    async def test_a_full_destinations_backlog_never_hides_another_destination(
        self, outbox, clock
    ):
        """Another process holds ep_a's bound and ep_a has a long backlog: a
        claim still finds ep_b's delivery behind it."""
        for number in range(60):
            await outbox.enqueue(
                message(clock, f"msg_a{number}"), ["ep_a"], due_at=clock.now()
            )
        assert len(await claim(outbox, holder="w1", per_destination=10)) == 10
        clock.advance(timedelta(seconds=1))
        await outbox.enqueue(message(clock, "msg_b"), ["ep_b"], due_at=clock.now())
        taken = await claim(outbox, holder="w2", limit=2, per_destination=10)
        assert [d.destination for d in taken] == ["ep_b"]

    async def test_an_attempt_is_recorded_and_decides_the_state(self, outbox, clock):
        """record keeps the attempt, counts it and schedules the next one."""
        await outbox.enqueue(message(clock), ["ep_a"], due_at=clock.now())
        [taken] = await claim(outbox)
        later = clock.now() + timedelta(seconds=5)
        assert await outbox.record(
            taken.delivery_id,
            holder="w1",
            attempt=attempt(clock),
            state="pending",
            next_attempt_at=later,
        )
        [delivery] = (await outbox.read("msg_1")).deliveries
        assert delivery.attempts == 1
        assert delivery.next_attempt_at == later
        assert delivery.history == (attempt(clock),)
        assert await claim(outbox, holder="w2") == []  # not due, lease gone
        clock.advance(timedelta(seconds=5))
        [again] = await claim(outbox, holder="w2")
        assert again.attempts == 1
        assert await outbox.record(
            again.delivery_id,
            holder="w2",
            attempt=attempt(clock, status=200),
            state="delivered",
            next_attempt_at=None,
        )
        record = await outbox.read("msg_1")
        assert record.state == "delivered"
        assert [a.status for a in record.deliveries[0].history] == [503, 200]
        assert record.deliveries[0].next_attempt_at is None
        assert await claim(outbox, holder="w3") == []

    async def test_a_lost_lease_keeps_the_attempt_but_not_the_state(
        self, outbox, clock
    ):
        """A worker whose claim lapsed and was taken over cannot decide the state."""
        await outbox.enqueue(message(clock), ["ep_a"], due_at=clock.now())
        [taken] = await claim(outbox, holder="w1")
        clock.advance(LEASE)
        assert len(await claim(outbox, holder="w2")) == 1
        kept = await outbox.record(
            taken.delivery_id,
            holder="w1",
            attempt=attempt(clock, status=200),
            state="delivered",
            next_attempt_at=None,
        )
        assert not kept
        [delivery] = (await outbox.read("msg_1")).deliveries
        assert delivery.state == "pending"
        assert [a.status for a in delivery.history] == [200]

    async def test_redelivery_makes_deliveries_due_now_and_keeps_history(
        self, outbox, clock
    ):
        """A failed delivery redelivered starts its schedule again, history kept."""
        await outbox.enqueue(message(clock), ["ep_a", "ep_b"], due_at=clock.now())
        for taken in await claim(outbox):
            await outbox.record(
                taken.delivery_id,
                holder="w1",
                attempt=attempt(clock),
                state="failed",
                next_attempt_at=None,
            )
        assert (await outbox.read("msg_1")).state == "failed"
        clock.advance(timedelta(hours=1))
        assert (
            await outbox.redeliver("msg_1", destinations=["ep_b"], at=clock.now()) == 1
        )
        record = await outbox.read("msg_1")
        states = {
            d.destination: (d.state, d.attempts, d.schedule_start)
            for d in record.deliveries
        }
        assert states == {"ep_a": ("failed", 1, 0), "ep_b": ("pending", 1, 1)}
        assert len(record.deliveries[1].history) == 1
        [taken] = await claim(outbox)
        assert taken.destination == "ep_b"
        assert taken.message.message_id == "msg_1"

    async def test_redelivery_leaves_a_delivery_in_flight_to_its_worker(
        self, outbox, clock
    ):
        """A claimed delivery is not made claimable again by a redelivery."""
        await outbox.enqueue(message(clock), ["ep_a"], due_at=clock.now())
        [taken] = await claim(outbox, holder="w1")
        assert await outbox.redeliver("msg_1", destinations=None, at=clock.now()) == 0
        assert await claim(outbox, holder="w2") == []
        assert await outbox.record(
            taken.delivery_id,
            holder="w1",
            attempt=attempt(clock, status=200),
            state="delivered",
            next_attempt_at=None,
        )

    async def test_failing_an_endpoints_pending_deliveries_spares_claimed_ones(
        self, outbox, clock
    ):
        """fail_pending fails what waits for a destination, not what is in flight."""
        await outbox.enqueue(message(clock, "msg_1"), ["ep_a"], due_at=clock.now())
        [in_flight] = await claim(outbox)
        await outbox.enqueue(
            message(clock, "msg_2"), ["ep_a", "ep_b"], due_at=clock.now()
        )
        failed = await outbox.fail_pending(
            "ep_a", attempt=attempt(clock, status=None, error="disabled")
        )
        assert failed == 1
        second = await outbox.read("msg_2")
        states = {d.destination: d.state for d in second.deliveries}
        assert states == {"ep_a": "failed", "ep_b": "pending"}
        assert second.deliveries[0].history[0].error == "disabled"
        first = await outbox.read(in_flight.message.message_id)
        assert first.deliveries[0].state == "pending"

    async def test_messages_are_listed_newest_first_by_state_page_by_page(
        self, outbox, clock
    ):
        """list filters by state and pages with the last id seen."""
        for number in range(5):
            await outbox.enqueue(
                message(clock, f"msg_{number}"), ["ep_a"], due_at=clock.now()
            )
            clock.advance(timedelta(seconds=1))
        for taken in await claim(outbox, limit=2):
            await outbox.record(
                taken.delivery_id,
                holder="w1",
                attempt=attempt(clock),
                state="failed",
                next_attempt_at=None,
            )
        page = await outbox.list(channel="webhook", state=None, limit=3, before=None)
        assert [r.message.message_id for r in page] == ["msg_4", "msg_3", "msg_2"]
        page = await outbox.list(channel="webhook", state=None, limit=3, before="msg_2")
        assert [r.message.message_id for r in page] == ["msg_1", "msg_0"]
        failed = await outbox.list(
            channel="webhook", state="failed", limit=10, before=None
        )
        assert [r.message.message_id for r in failed] == ["msg_1", "msg_0"]
        pending = await outbox.list(
            channel="webhook", state="pending", limit=10, before=None
        )
        assert len(pending) == 3
        assert (
            await outbox.list(
                channel="webhook", state="delivered", limit=10, before=None
            )
            == []
        )

    async def test_each_channel_lists_and_claims_only_its_own_messages(
        self, outbox, clock
    ):
        """A mail never shows among webhook messages, nor is claimed by them."""
        await outbox.enqueue(message(clock, "msg_hook"), ["ep_a"], due_at=clock.now())
        clock.advance(timedelta(seconds=1))
        mail = message(clock, "em_1", kind="invite", body=b"Subject: x", channel="mail")
        await outbox.enqueue(mail, ["ada@example.com"], due_at=clock.now())
        hooks = await outbox.list(channel="webhook", state=None, limit=10, before=None)
        mails = await outbox.list(channel="mail", state=None, limit=10, before=None)
        assert [r.message.message_id for r in hooks] == ["msg_hook"]
        assert [r.message.message_id for r in mails] == ["em_1"]
        assert [d.message.message_id for d in await claim(outbox)] == ["msg_hook"]
        assert await outbox.next_due("mail") == mail.created_at

    async def test_purge_forgets_old_finished_messages_only(self, outbox, clock):
        """Old messages of the channel with nothing pending go; pending ones
        stay however old; another channel's are its own worker's to purge."""
        await outbox.enqueue(message(clock, "msg_done"), ["ep_a"], due_at=clock.now())
        await outbox.enqueue(message(clock, "msg_wait"), ["ep_a"], due_at=clock.now())
        mail = message(clock, "em_done", channel="mail")
        await outbox.enqueue(mail, ["a@example.org"], due_at=clock.now())
        [sent] = await outbox.claim(
            channel="mail",
            holder="w1",
            limit=1,
            per_destination=1,
            skip=(),
            lease=LEASE,
        )
        await outbox.record(
            sent.delivery_id,
            holder="w1",
            attempt=attempt(clock, status=250),
            state="delivered",
            next_attempt_at=None,
        )
        [taken, _] = await claim(outbox)
        await outbox.record(
            taken.delivery_id,
            holder="w1",
            attempt=attempt(clock, status=200),
            state="delivered",
            next_attempt_at=None,
        )
        clock.advance(timedelta(days=31))
        cutoff = clock.now() - timedelta(days=30)
        assert await outbox.purge(channel="webhook", before=cutoff) == 1
        assert await outbox.read("msg_done") is None
        assert await outbox.read("msg_wait") is not None
        assert await outbox.read("em_done") is not None
        assert await outbox.purge(channel="mail", before=cutoff) == 1
        assert await outbox.read("em_done") is None


def endpoint(clock, endpoint_id="ep_1", event_types=None):
    return EndpointRecord(
        endpoint_id=endpoint_id,
        url="https://hooks.example.com/in",
        event_types=event_types,
        jwt_header="authorization",
        secrets=(EndpointSecret(SECRET),),
        created_at=clock.now(),
    )


class EndpointStoreContract:
    """Subclass with a ``store`` fixture."""

    @pytest.fixture
    def endpoints(self, store):
        return store.endpoints

    async def test_endpoints_are_kept_and_listed_oldest_first(self, endpoints, clock):
        """add, get and all round-trip every field."""
        first = endpoint(clock, "ep_1", event_types=("a.b", "c"))
        second = endpoint(clock, "ep_2")
        await endpoints.add(first)
        await endpoints.add(second)
        assert await endpoints.get("ep_1") == first
        assert await endpoints.get("ep_x") is None
        assert await endpoints.all() == [first, second]

    async def test_an_update_applies_a_change_and_keeps_it(self, endpoints, clock):
        """update rotates or disables atomically and returns the result."""
        await endpoints.add(endpoint(clock))
        now = clock.now()
        rotated = await endpoints.update(
            "ep_1",
            lambda r: r.rotated(
                "whsec_" + "A" * 40, now=now, overlap_until=now + timedelta(hours=24)
            ),
        )
        assert rotated.signing_secrets(now) == ["whsec_" + "A" * 40, SECRET]
        later = now + timedelta(hours=25)
        assert rotated.signing_secrets(later) == ["whsec_" + "A" * 40]
        disabled = await endpoints.update("ep_1", lambda r: r.disabled(now, "410 Gone"))
        assert await endpoints.get("ep_1") == disabled
        assert not disabled.is_enabled
        assert disabled.disabled_reason == "410 Gone"
        assert await endpoints.update("ep_x", lambda r: r) is None

    async def test_concurrent_adds_stop_at_the_bound_their_room_sets(
        self, endpoints, clock
    ):
        """Twelve adds at once, each allowed while fewer than five are kept:
        exactly five are kept; a refused add writes nothing."""

        def room(known):
            if len(known) >= 5:
                raise ValueError("full")

        results = await asyncio.gather(
            *(endpoints.add(endpoint(clock, f"ep_{n}"), room=room) for n in range(12)),
            return_exceptions=True,
        )
        assert sum(r is None for r in results) == 5
        assert all(isinstance(r, ValueError) for r in results if r is not None)
        assert len(await endpoints.all()) == 5

    async def test_an_update_refused_by_its_room_changes_nothing(
        self, endpoints, clock
    ):
        """room sees every endpoint before the change; raising, it stops it."""
        await endpoints.add(endpoint(clock))
        seen = []

        def room(known):
            seen.append([e.endpoint_id for e in known])
            raise ValueError("full")

        with pytest.raises(ValueError, match="full"):
            await endpoints.update(
                "ep_1", lambda r: r.disabled(clock.now(), "x"), room=room
            )
        assert seen == [["ep_1"]]
        assert (await endpoints.get("ep_1")).is_enabled
