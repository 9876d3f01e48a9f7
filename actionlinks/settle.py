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
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

T = TypeVar("T")
_log = logging.getLogger(__name__)


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
        if failure is not None:
            _log.warning("work of a cancelled request failed: %s", failure)
        elif abandoned is not None and task.result():
            self._start(abandoned(task.result()))

    async def wait(self) -> None:
        """Wait until every work started so far (and what it gave back) ended."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
