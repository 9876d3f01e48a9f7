"""The heartbeat beside long work (actionlinks.beats)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from actionlinks.beats import while_beating

EVERY = timedelta(milliseconds=20)


async def test_work_that_ends_before_a_beat_is_due_never_beats():
    """Quick work costs no beat at all, and its result comes back."""
    beats = []

    async def beat():
        beats.append(1)

    async def work():
        return "done"

    assert await while_beating(work(), beat, every=EVERY) == "done"
    await asyncio.sleep(0.06)
    assert beats == []


async def test_long_work_beats_until_it_ends_and_not_after():
    """Beats come while the work runs and stop with it."""
    beats = []

    async def beat():
        beats.append(1)

    await while_beating(asyncio.sleep(0.15), beat, every=EVERY)
    seen = len(beats)
    assert seen >= 3
    await asyncio.sleep(0.1)
    assert len(beats) == seen


async def test_the_works_failure_is_raised_as_itself():
    """No exception group: the caller sees the handler's own error."""

    async def beat():
        pass

    async def work():
        await asyncio.sleep(0.05)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await while_beating(work(), beat, every=EVERY)


async def test_a_failing_beat_is_logged_and_the_work_goes_on(caplog):
    """A beat that raises does not cancel the work it keeps alive."""

    async def beat():
        await asyncio.sleep(0.05)
        raise RuntimeError("store gone")

    async def work():
        await asyncio.sleep(0.1)
        return 7

    with caplog.at_level(logging.WARNING, logger="actionlinks.beats"):
        assert await while_beating(work(), beat, every=EVERY) == 7
    assert any(
        r.name == "actionlinks.beats" and "store gone" in r.getMessage()
        for r in caplog.records
    )
    assert not any(r.name == "asyncio" for r in caplog.records)


async def test_cancelling_the_work_stops_the_beats():
    """A cancelled request leaves no heartbeat behind."""
    beats = []

    async def beat():
        beats.append(1)

    task = asyncio.ensure_future(while_beating(asyncio.sleep(10), beat, every=EVERY))
    await asyncio.sleep(0.07)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    seen = len(beats)
    await asyncio.sleep(0.08)
    assert len(beats) == seen


async def test_a_slow_beat_is_never_doubled_and_finishes_after_the_work():
    """Found by an audit: beats piled up beside a slow one and were cut off.

    A beat taking three intervals has no second beat beside it, and the one
    under way when the work ends completes (its store statement is never cut
    off halfway) before ``while_beating`` returns.
    """
    running, most, finished = 0, 0, []

    async def beat():
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.06)
        running -= 1
        finished.append(1)

    await while_beating(asyncio.sleep(0.1), beat, every=EVERY)
    assert most == 1
    assert running == 0
    assert finished
