"""Writes that go together run to their end, whatever cancels their caller.

A use that dispatches nothing is consumed and stamped "used"; a revocation is
written to the ledger and to the links' status. Split by a cancellation, the
ledger and the status would disagree. An anyio shield does not stop asyncio's
own cancellation (``Task.cancel``, ``asyncio.timeout``), and a write whose
commit landed can still lose its answer to one. So such work runs in a task of
its own, awaited behind an anyio shield: anyio's cancellation waits until it
ended (the caller hears its answer); asyncio's stops the wait, the work goes
on to its end, and what it took is given back, nobody being left to use it (a
held link is released).

The work runs on the event loop of its caller: a service belongs to the loop
that opened it, which must outlive it (its work ends with the loop).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from actionlinks.errors import TokenError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Coroutine

T = TypeVar("T")
_log = logging.getLogger(__name__)

CLOSE_WAIT = 10.0
"""How long, in seconds, a closing service waits for the work of cancelled
calls (a store that stalls longer is closed under it, and the work fails)."""


async def wait_out(
    tasks: Collection[asyncio.Future[Any]], *, limit: float | None = None
) -> asyncio.CancelledError | None:
    """Wait until ``tasks`` ended (or ``limit`` seconds passed), cancelling none.

    anyio's cancellation does not reach the wait; asyncio's is held back until
    it ends and returned, for the caller to raise or to ask again.
    """
    loop = asyncio.get_running_loop()
    deadline = None if limit is None else loop.time() + limit
    pending = set(tasks)
    held: asyncio.CancelledError | None = None
    with anyio.CancelScope(shield=True):
        while pending:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                break
            try:
                _, pending = await asyncio.wait(pending, timeout=left)
            except asyncio.CancelledError as exc:  # asyncio's own: held back
                held = exc
    return held


def cancel_again() -> None:
    """Ask for the current task's cancellation again (held back by wait_out)."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()  # the count stays as the canceller left it
        task.cancel()


class Settler:
    """Runs work that must not be split; :meth:`wait` for all of it at close."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        """Nothing runs yet."""
        self._tasks: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        """Say how much runs."""
        return f"Settler(running={len(self._tasks)})"

    async def run(
        self,
        work: Coroutine[Any, Any, T],
        *,
        abandoned: Callable[[T], Coroutine[Any, Any, object]] | None = None,
    ) -> T:
        """Run ``work`` to its end; its result, unless the caller is cancelled.

        Args:
            work: the writes that go together.
            abandoned: given the result of ``work`` that finished after its
                caller was cancelled, when it took something (a truthy
                result), to give it back.

        Raises:
            Exception: whatever ``work`` raised.
        """
        task = self._start(work)
        try:
            with anyio.CancelScope(shield=True):
                result = await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda done: self._give_back(done, abandoned))
            raise
        return result

    def _start(self, work: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _give_back(
        self,
        task: asyncio.Task[T],
        abandoned: Callable[[T], Coroutine[Any, Any, object]] | None,
    ) -> None:
        """The caller was cancelled: log a failure, or give back what was taken."""
        if task.cancelled():
            return
        failure = task.exception()
        if failure is not None and not isinstance(failure, TokenError):
            # (A rejection is an answer, heard by nobody.)
            _log.warning("work of a cancelled request failed: %s", failure)
        elif abandoned is not None and task.result():
            self._start(abandoned(task.result()))

    async def wait(self) -> None:
        """Wait until the work of this loop started so far ended (at close).

        Nothing is cancelled; a cancellation of the wait itself is raised only
        when the work ended or :data:`CLOSE_WAIT` passed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_WAIT
        held: asyncio.CancelledError | None = None
        while True:
            mine = [task for task in list(self._tasks) if task.get_loop() is loop]
            left = deadline - loop.time()
            if not mine or left <= 0:
                break
            held = await wait_out(mine, limit=left) or held
        if mine:
            _log.warning(
                "closing with %d writes of cancelled calls unfinished", len(mine)
            )
        if held is not None:
            raise held
