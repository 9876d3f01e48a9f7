"""The outbox worker: claims due deliveries, attempts them, records each attempt.

One worker per channel runs in each open service. It claims what is due (at
most ``concurrency`` at once; at most ``per_destination`` claims live for one
destination, counted across every worker in every process), renews its
leases while the attempts run, records every attempt with what came of it,
and schedules the next one from the
:class:`~actionlinks.outbox.schedule.RetryPolicy`. It wakes when this process
accepts a message, when an attempt ends, when the next one is due, and every
``POLL`` (messages accepted by another process). Asked to :meth:`drain`
(the service closing), it claims nothing more and lets the attempts in flight
finish, for up to ``DRAIN``: a restart does not cut a mail off between the
server's 250 and its record. Stopped, it gives its leases back; killed, its
leases lapse and any worker takes the deliveries over. Delivery is at least
once: an attempt that succeeded just before a crash is made again.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, Protocol

import anyio
import anyio.lowlevel

from actionlinks.errors import LedgerUnavailableError
from actionlinks.outbox.model import Attempt

if TYPE_CHECKING:
    from datetime import datetime

    from anyio.abc import TaskGroup

    from actionlinks.clock import Clock
    from actionlinks.outbox.model import Delivery, DeliveryState
    from actionlinks.outbox.schedule import RetryPolicy
    from actionlinks.outbox.store import Outbox

_log = logging.getLogger("actionlinks.outbox")

LEASE = timedelta(seconds=20)
"""How long a claim holds without renewal (a killed worker's lapses after this)."""
POLL = timedelta(seconds=1)
"""How often the outbox is looked at without being woken."""
RETENTION = timedelta(days=30)
"""How long a message with nothing pending is kept, with its attempts (by
default; the mail is kept as long as its link may be renewed)."""
DRAIN = timedelta(seconds=10)
"""How long a draining worker lets the attempts in flight finish."""
PURGE_EVERY = timedelta(hours=1)
PURGE_BATCH = 1000
"""The most messages one purge transaction forgets (the stores' batch)."""

Outcome = Literal["delivered", "retry", "failed"]


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptResult:
    """What one attempt came to.

    Attributes:
        attempt: the attempt, as it is recorded.
        outcome: ``delivered``; ``retry`` on the schedule; ``failed`` for good.
        retry_after: how long the destination asked to be left alone.
    """

    attempt: Attempt
    outcome: Outcome
    retry_after: timedelta | None = None


class Attempter(Protocol):
    """Makes one attempt at a delivery; never raises for the destination's failure."""

    async def __call__(self, delivery: Delivery) -> AttemptResult:
        """Attempt ``delivery``."""
        ...


class OutboxWorker:
    """Delivers one channel's due messages (see the module's text).

    Args:
        outbox: where the messages are.
        attempt: makes one attempt.
        channel: which messages (``webhook``).
        clock: the source of time.
        policy: when a failed delivery is tried again.
        concurrency: the most attempts in flight.
        per_destination: the most attempts in flight to one destination.
        retention: how long a finished message is kept.
    """

    def __init__(  # noqa: PLR0913 - keyword-only collaborators and bounds
        self,
        outbox: Outbox,
        attempt: Attempter,
        *,
        channel: str,
        clock: Clock,
        policy: RetryPolicy,
        concurrency: int = 64,
        per_destination: int = 10,
        retention: timedelta = RETENTION,
    ) -> None:
        """Prepare; :meth:`run` works."""
        self._outbox = outbox
        self._attempt = attempt
        self._channel = channel
        self._clock = clock
        self._policy = policy
        self._concurrency = concurrency
        self._per_destination = per_destination
        self._retention = retention
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._held: dict[int, str] = {}  # delivery id -> destination
        self._in_flight: dict[str, int] = {}
        self._wakeup: anyio.Event | None = None
        self._last_purge: datetime | None = None
        self._draining = False
        self._settled: anyio.Event | None = None

    def __repr__(self) -> str:
        """Name the channel and the holder."""
        return f"OutboxWorker({self._channel!r}, holder={self.holder!r})"

    def wake(self) -> None:
        """Look at the outbox now (a message was accepted)."""
        if self._wakeup is not None:
            self._wakeup.set()

    async def drain(self, grace: timedelta | None = None) -> None:
        """Claim nothing more; return once the attempts in flight are recorded.

        At most ``grace`` (``DRAIN``); what is still in flight then is
        cancelled by the caller (and its claims given back) as usual.
        """
        self._draining = True
        with anyio.move_on_after((grace or DRAIN).total_seconds()):
            while self._held:
                self._settled = anyio.Event()
                await self._settled.wait()

    async def run(self) -> None:
        """Deliver until cancelled; then give the leases back."""
        self._draining = False
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._renew_forever)
                tasks.start_soon(self._purge_forever)  # never holds up delivery
                while True:
                    self._wakeup = anyio.Event()
                    await self._fill(tasks)
                    await self._wait()
        finally:
            with anyio.CancelScope(shield=True):
                await self._give_back()

    async def _give_back(self) -> None:
        held, self._held = list(self._held), {}
        await self._release(held)

    async def _release(self, delivery_ids: list[int]) -> None:
        try:
            await self._outbox.release(holder=self.holder, delivery_ids=delivery_ids)
        except LedgerUnavailableError as exc:
            _log.warning("claims not given back, they lapse in %s: %s", LEASE, exc)

    async def _fill(self, tasks: TaskGroup) -> None:
        while not self._draining and (free := self._concurrency - len(self._held)) > 0:
            busy = {d for d, n in self._in_flight.items() if n >= self._per_destination}
            try:
                claimed = await self._outbox.claim(
                    channel=self._channel,
                    holder=self.holder,
                    limit=free,
                    per_destination=self._per_destination,
                    skip=busy,
                    lease=LEASE,
                )
            except LedgerUnavailableError as exc:
                _log.warning("the outbox could not be read: %s", exc)
                return
            # The claim kept every destination within its bound, counting the
            # claims of every worker (this one's included).
            for delivery in claimed:
                destination = delivery.destination
                self._in_flight[destination] = self._in_flight.get(destination, 0) + 1
                self._held[delivery.delivery_id] = destination
                tasks.start_soon(self._deliver, delivery)
            if len(claimed) < free:
                return

    async def _wait(self) -> None:
        wakeup = self._wakeup
        assert wakeup is not None  # noqa: S101 - set by run
        timeout = POLL.total_seconds()
        if len(self._held) < self._concurrency:
            try:
                due = await self._outbox.next_due(self._channel)
            except LedgerUnavailableError:
                due = None
            if due is not None:
                wait = (due - self._clock.now()).total_seconds()
                if wait > 0:
                    timeout = min(timeout, wait)
        with anyio.move_on_after(timeout):
            await wakeup.wait()

    async def _renew_forever(self) -> None:
        while True:
            await anyio.sleep(LEASE.total_seconds() / 4)
            if self._held:
                try:
                    await self._outbox.extend(
                        holder=self.holder, delivery_ids=list(self._held), lease=LEASE
                    )
                except LedgerUnavailableError as exc:
                    _log.warning("claims not renewed: %s", exc)

    async def _purge_forever(self) -> None:
        while True:
            await self._purge_when_due()
            await anyio.sleep(POLL.total_seconds())

    async def _purge_when_due(self) -> None:
        """Forget old finished messages: when the worker starts, then hourly."""
        now = self._clock.now()
        if self._last_purge is not None and now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        try:
            # In batches (one write transaction each) until none is left.
            while (
                await self._outbox.purge(
                    channel=self._channel, before=now - self._retention
                )
                >= PURGE_BATCH
            ):
                await anyio.lowlevel.checkpoint()
        except LedgerUnavailableError as exc:
            _log.warning("old messages not purged: %s", exc)

    async def _deliver(self, delivery: Delivery) -> None:
        finished = False
        try:
            try:
                result = await self._attempt(delivery)
            except Exception:  # noqa: BLE001 - a bug must not lose the delivery
                _log.exception("delivery %s failed", delivery.message.message_id)
                result = AttemptResult(
                    attempt=Attempt(
                        at=self._clock.now(),
                        latency=timedelta(0),
                        error="internal error",
                    ),
                    outcome="retry",
                )
            await self._record(delivery, result)
            finished = True
        finally:
            if not finished:  # stopped mid-attempt: due again at once, anywhere
                with anyio.CancelScope(shield=True):
                    await self._release([delivery.delivery_id])
            destination = self._held.pop(delivery.delivery_id, delivery.destination)
            self._in_flight[destination] -= 1
            if not self._in_flight[destination]:
                del self._in_flight[destination]
            if self._settled is not None and not self._held:
                self._settled.set()
            self.wake()

    async def _record(self, delivery: Delivery, result: AttemptResult) -> None:
        next_at = None
        if result.outcome == "retry":
            next_at = self._policy.next_attempt(
                now=self._clock.now(),
                attempts=delivery.attempts + 1 - delivery.schedule_start,
                retry_after=result.retry_after,
            )
        state: DeliveryState = (
            "delivered"
            if result.outcome == "delivered"
            else ("pending" if next_at is not None else "failed")
        )
        try:
            kept = await self._outbox.record(
                delivery.delivery_id,
                holder=self.holder,
                attempt=result.attempt,
                state=state,
                next_attempt_at=next_at,
            )
        except LedgerUnavailableError as exc:  # the lease lapses; tried again
            _log.warning(
                "attempt at %s not recorded, it will be made again: %s",
                delivery.message.message_id,
                exc,
            )
            return
        if not kept:
            _log.info(
                "claim on %s lapsed during the attempt", delivery.message.message_id
            )
        elif result.outcome == "retry" and next_at is None:
            attempt = result.attempt
            _log.warning(
                "%s %s to %s failed for good: the retry schedule is spent after %d "
                "attempts (last: %s); it is listed with state=failed and can be "
                "sent again",
                self._channel,
                delivery.message.message_id,
                delivery.destination,
                delivery.attempts + 1,
                attempt.error or attempt.status,
            )
