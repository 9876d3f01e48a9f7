"""Running one piece of work while a heartbeat keeps its claim alive."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import timedelta

T = TypeVar("T")


async def while_beating(
    work: Awaitable[T], beat: Callable[[], Awaitable[None]], *, every: timedelta
) -> T:
    """Await ``work``, calling ``beat`` every ``every`` until it ends.

    The work's own failure is raised as itself, not inside an exception group;
    the heartbeat stops with the work, however it ends.
    """

    async def beating() -> None:
        while True:
            await anyio.sleep(every.total_seconds())
            await beat()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(beating)
            try:
                return await work
            finally:
                tasks.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        failure: BaseException = (
            group.exceptions[0] if len(group.exceptions) == 1 else group
        )
    raise failure
