"""Running one piece of work while a heartbeat keeps its claim alive."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, TypeVar

from actionlinks.settle import cancel_again, wait_out

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import timedelta

T = TypeVar("T")
_log = logging.getLogger(__name__)


async def while_beating(
    work: Awaitable[T], beat: Callable[[], Awaitable[None]], *, every: timedelta
) -> T:
    """Await ``work``, calling ``beat`` every ``every`` until it ends.

    The work runs in the caller's task; the heartbeat is a timer that starts a
    beat only when one is due (and none is under way), so work that ends
    sooner costs no task at all. The work's own failure is raised as itself;
    the heartbeat stops with the work, however it ends, after letting a beat
    under way finish; a beat that fails is logged, never raised. An asyncio
    cancellation that comes while that beat finishes reaches the caller at its
    next await: work that ended returns its result (a handler that ran is
    never taken for one that did not).
    """
    loop = asyncio.get_running_loop()
    seconds = every.total_seconds()
    beats: set[asyncio.Task[None]] = set()
    timer: asyncio.TimerHandle | None = None

    async def one_beat() -> None:
        await beat()

    def finished(task: asyncio.Task[None]) -> None:
        beats.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.warning("a heartbeat failed: %s", task.exception())

    def due() -> None:
        nonlocal timer
        if not beats:  # one at a time: a slow beat gets no second one beside it
            task = loop.create_task(one_beat())
            beats.add(task)
            task.add_done_callback(finished)
        timer = loop.call_later(seconds, due)

    timer = loop.call_later(seconds, due)
    try:
        return await work
    finally:
        if timer is not None:
            timer.cancel()
        # A beat under way finishes: its statement may be shielded in the
        # store, and cancelling the task would cut it off halfway anyway.
        if beats and await wait_out(beats) is not None:
            cancel_again()
