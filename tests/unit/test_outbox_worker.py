"""The outbox worker: retries on the schedule, one id, bounded, nothing lost."""

from __future__ import annotations

import random
from datetime import timedelta

import anyio
import pytest

from actionlinks.errors import LedgerUnavailableError
from actionlinks.outbox import (
    Attempt,
    AttemptResult,
    Message,
    OutboxWorker,
    RetryPolicy,
)
from actionlinks.outbox.schedule import RETRY_AFTER_CAP, parse_retry_after
from actionlinks.stores import MemoryStore


class Script:
    """An attempter answering from a script of outcomes; records what it saw."""

    def __init__(self, clock, outcomes, *, hold=0.0):
        self.clock = clock
        self.outcomes = list(outcomes)
        self.seen = []
        self.hold = hold
        self.running = 0
        self.most = 0

    async def __call__(self, delivery):
        self.seen.append((delivery.message.message_id, delivery.destination))
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await anyio.sleep(self.hold)
            outcome = self.outcomes.pop(0) if self.outcomes else "delivered"
            if isinstance(outcome, Exception):
                raise outcome
            outcome, retry_after = (
                outcome if isinstance(outcome, tuple) else (outcome, None)
            )
            status = 200 if outcome == "delivered" else 503
            return AttemptResult(
                attempt=Attempt(
                    at=self.clock.now(),
                    latency=timedelta(milliseconds=1),
                    status=status,
                ),
                outcome=outcome,
                retry_after=retry_after,
            )
        finally:
            self.running -= 1


@pytest.fixture
def outbox(clock):
    return MemoryStore(clock=clock).outbox


def worker(outbox, attempter, clock, schedule=(0, 0, 0), **bounds):
    return OutboxWorker(
        outbox,
        attempter,
        channel="webhook",
        clock=clock,
        policy=RetryPolicy(
            [timedelta(seconds=s) for s in schedule],
            rng=random.Random(7),  # noqa: S311 - jitter
        ),
        **bounds,
    )


async def enqueue(outbox, clock, message_id="msg_1", destinations=("ep_a",)):
    message = Message(
        message_id=message_id,
        channel="webhook",
        kind="user.created",
        body=b"{}",
        created_at=clock.now(),
    )
    await outbox.enqueue(message, list(destinations), due_at=clock.now())


async def until(predicate, seconds=10.0):
    with anyio.fail_after(seconds):
        while not await predicate():  # noqa: ASYNC110 - polls the store
            await anyio.sleep(0.01)


async def state_of(outbox, message_id="msg_1"):
    return (await outbox.read(message_id)).state


async def test_a_failing_delivery_is_retried_with_one_id_until_it_succeeds(
    outbox, clock
):
    """503, 503, 200: three attempts, every one with the same message id."""
    script = Script(clock, ["retry", "retry", "delivered"])
    await enqueue(outbox, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(outbox, script, clock).run)
        await until(lambda: _is(outbox, "delivered"))
        tasks.cancel_scope.cancel()
    assert script.seen == [("msg_1", "ep_a")] * 3
    [delivery] = (await outbox.read("msg_1")).deliveries
    assert [a.status for a in delivery.history] == [503, 503, 200]
    assert delivery.attempts == 3


async def _is(outbox, state, message_id="msg_1"):
    return await state_of(outbox, message_id) == state


async def test_a_delivery_that_spends_its_schedule_fails_and_is_listed(
    outbox, clock, caplog
):
    """Every attempt of the schedule failed: a dead letter, listed as failed,
    and said at WARNING."""
    script = Script(clock, ["retry"] * 10)
    await enqueue(outbox, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(outbox, script, clock, schedule=(0, 0)).run)
        await until(lambda: _is(outbox, "failed"))
        tasks.cancel_scope.cancel()
    assert len(script.seen) == 2
    failed = await outbox.list(channel="webhook", state="failed", limit=10, before=None)
    assert [r.message.message_id for r in failed] == ["msg_1"]
    [said] = [r for r in caplog.records if "failed for good" in r.getMessage()]
    assert said.levelname == "WARNING"
    assert "webhook msg_1 to ep_a" in said.getMessage()
    assert "after 2 attempts" in said.getMessage()


async def test_a_410_style_failure_is_not_retried(outbox, clock):
    """An attempt judged failed for good ends the delivery at once."""
    script = Script(clock, ["failed"])
    await enqueue(outbox, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(outbox, script, clock).run)
        await until(lambda: _is(outbox, "failed"))
        tasks.cancel_scope.cancel()
    assert len(script.seen) == 1


async def test_retry_after_postpones_the_next_attempt_within_bounds(outbox, clock):
    """Retry-After beyond the schedule is honoured, up to the cap."""
    script = Script(
        clock, [("retry", timedelta(minutes=2)), ("retry", timedelta(days=9))]
    )
    await enqueue(outbox, clock)
    await enqueue(outbox, clock, "msg_2")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(outbox, script, clock, schedule=(0, 5, 5)).run)

        async def both_tried():
            counts = [
                (await outbox.read(m)).deliveries[0].attempts
                for m in ("msg_1", "msg_2")
            ]
            return counts == [1, 1]

        await until(both_tried)
        tasks.cancel_scope.cancel()
    due = {
        m: (await outbox.read(m)).deliveries[0].next_attempt_at - clock.now()
        for m in ("msg_1", "msg_2")
    }
    assert due["msg_1"] == timedelta(minutes=2)
    assert due["msg_2"] == RETRY_AFTER_CAP


async def test_a_bug_in_an_attempt_loses_nothing(outbox, clock):
    """An attempter that raises is recorded as a failed attempt and retried."""
    script = Script(clock, [RuntimeError("bug"), "delivered"])
    await enqueue(outbox, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(outbox, script, clock).run)
        await until(lambda: _is(outbox, "delivered"))
        tasks.cancel_scope.cancel()
    [delivery] = (await outbox.read("msg_1")).deliveries
    assert [a.error for a in delivery.history] == ["internal error", None]


async def test_attempts_in_flight_per_destination_are_bounded(outbox, clock):
    """Twenty messages to one slow endpoint: never more than the bound at once,
    and another endpoint is served meanwhile."""
    script = Script(clock, [], hold=0.05)
    for number in range(20):
        await enqueue(outbox, clock, f"msg_{number}", destinations=("ep_slow",))
    await enqueue(outbox, clock, "msg_other", destinations=("ep_other",))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(
            worker(outbox, script, clock, concurrency=8, per_destination=3).run
        )

        async def all_delivered():
            records = await outbox.list(
                channel="webhook", state="delivered", limit=100, before=None
            )
            return len(records) == 21

        await until(all_delivered)
        tasks.cancel_scope.cancel()
    assert script.most <= 4  # three to the slow endpoint, one to the other
    order = [destination for _, destination in script.seen]
    assert order.index("ep_other") < 5


async def test_a_stopped_worker_gives_its_claims_back_at_once(outbox, clock):
    """Cancelled mid-attempt, the worker releases its lease: no wait for it."""
    script = Script(clock, [], hold=60)
    await enqueue(outbox, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(outbox, script, clock).run)
        await until(lambda: _seen(script))
        tasks.cancel_scope.cancel()
    taken = await outbox.claim(
        channel="webhook",
        holder="another",
        limit=1,
        per_destination=1,
        skip=(),
        lease=timedelta(seconds=20),
    )
    assert [d.message.message_id for d in taken] == ["msg_1"]
    assert (await outbox.read("msg_1")).deliveries[0].attempts == 0


async def _seen(script):
    return bool(script.seen)


def test_retry_after_is_read_as_seconds_or_an_http_date(clock):
    """Both forms of Retry-After; garbage is ignored."""
    now = clock.now()
    assert parse_retry_after("120", now=now) == timedelta(seconds=120)
    date = "Sun, 01 Mar 2026 12:05:00 GMT"
    assert parse_retry_after(date, now=now) == timedelta(minutes=5)
    assert parse_retry_after("Sun, 01 Mar 2020 12:05:00 GMT", now=now) == timedelta(0)
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("-5", now=now) is None
    assert parse_retry_after(None, now=now) is None
    assert parse_retry_after("9" * 40, now=now) > RETRY_AFTER_CAP


def test_the_schedule_grows_with_bounded_jitter_and_ends(clock):
    """Each wait is the schedule's plus at most 10 %; past the end, none."""
    policy = RetryPolicy([timedelta(0), timedelta(seconds=100)], rng=random.Random(1))  # noqa: S311
    now = clock.now()
    waits = {policy.next_attempt(now=now, attempts=1) - now for _ in range(50)}
    assert all(timedelta(seconds=100) <= w <= timedelta(seconds=110) for w in waits)
    assert len(waits) > 1
    assert policy.next_attempt(now=now, attempts=2) is None


class Flaky:
    """An outbox whose named operations fail (LedgerUnavailableError) while set."""

    def __init__(self, inner):
        self.inner = inner
        self.failing: set[str] = set()

    def __getattr__(self, name):
        operation = getattr(self.inner, name)

        async def call(*args, **kwargs):
            if name in self.failing:
                raise LedgerUnavailableError("the database failed: disk I/O error")
            return await operation(*args, **kwargs)

        return call


async def test_an_unavailable_database_delays_delivery_and_loses_nothing(
    outbox, clock, caplog
):
    """Claims and records that fail are logged; the message is delivered later."""
    flaky = Flaky(outbox)
    flaky.failing = {"claim"}
    script = Script(clock, ["delivered", "delivered"])
    await enqueue(outbox, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(flaky, script, clock).run)
        await anyio.sleep(0.05)
        assert script.seen == []
        flaky.failing = {"record", "release"}
        await until(lambda: _seen(script))
        clock.advance(timedelta(seconds=21))  # the unrecorded claim lapses
        flaky.failing = set()
        await until(lambda: _is(outbox, "delivered"))
        tasks.cancel_scope.cancel()
    assert len(script.seen) == 2  # at least once: the unrecorded one again
    assert "the outbox could not be read" in caplog.text
    assert "not recorded, it will be made again" in caplog.text


async def test_finished_messages_are_purged_after_the_retention(outbox, clock):
    """Once an hour the worker forgets finished messages older than 30 days."""
    script = Script(clock, [])
    await enqueue(outbox, clock, "msg_old")
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(outbox, script, clock).run)
        await until(lambda: _is(outbox, "delivered", "msg_old"))
        clock.advance(timedelta(days=31))
        await enqueue(outbox, clock, "msg_new")

        async def purged():
            return await outbox.read("msg_old") is None

        await until(purged)
        tasks.cancel_scope.cancel()
    assert await outbox.read("msg_new") is not None


async def test_a_starting_worker_purges_every_old_message_in_batches(outbox, clock):
    """At start, not an hour later, and past one batch of 1000 (messages that
    went nowhere included)."""
    for number in range(2500):
        await enqueue(outbox, clock, f"msg_{number}", destinations=())
    clock.advance(timedelta(days=31))
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(outbox, Script(clock, []), clock).run)

        async def emptied():
            return outbox.row_count() == 0

        await until(emptied)
        tasks.cancel_scope.cancel()


async def test_a_redelivered_dead_letter_gets_the_whole_schedule_again(outbox, clock):
    """Its attempts keep counting; its schedule starts over."""
    script = Script(clock, ["retry", "retry", "retry", "delivered"])
    await enqueue(outbox, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(outbox, script, clock, schedule=(0, 0)).run)
        await until(lambda: _is(outbox, "failed"))
        await outbox.redeliver("msg_1", destinations=None, at=clock.now())
        await until(lambda: _is(outbox, "delivered"))
        tasks.cancel_scope.cancel()
    [delivery] = (await outbox.read("msg_1")).deliveries
    assert delivery.attempts == 4
    assert len(delivery.history) == 4


async def test_a_long_purge_never_holds_up_delivery(outbox, clock):
    """Purging a large backlog runs beside delivery, not before it."""

    class SlowPurge(Flaky):
        async def purge(self, *, channel, before):
            await anyio.sleep(60)
            return 0

    script = Script(clock, [])
    await enqueue(outbox, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker(SlowPurge(outbox), script, clock).run)
        await until(lambda: _is(outbox, "delivered"), seconds=5)
        tasks.cancel_scope.cancel()


async def test_a_draining_worker_finishes_its_attempts_and_claims_no_more(
    outbox, clock
):
    """drain(): the attempt in flight ends and is recorded (not released to be
    made again); nothing new is claimed; a hung attempt is given up at the
    grace."""
    script = Script(clock, [], hold=0.2)
    await enqueue(outbox, clock, "msg_1")
    delivering = worker(outbox, script, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(delivering.run)
        await until(lambda: _seen(script))
        await enqueue(outbox, clock, "msg_2")
        delivering.wake()
        await delivering.drain(timedelta(seconds=30))
        tasks.cancel_scope.cancel()
    assert (await outbox.read("msg_1")).deliveries[0].state == "delivered"
    assert (await outbox.read("msg_2")).deliveries[0].attempts == 0
    assert [seen for seen, _ in script.seen] == ["msg_1"]
    hung = Script(clock, [], hold=60)
    stuck = worker(outbox, hung, clock)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(stuck.run)
        await until(lambda: _seen(hung))
        with anyio.fail_after(5):
            await stuck.drain(timedelta(milliseconds=50))
        tasks.cancel_scope.cancel()
    assert (await outbox.read("msg_2")).deliveries[0].state == "pending"
