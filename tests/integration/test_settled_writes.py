"""Writes that go together are never split, wherever a cancellation lands.

A use that runs nothing is consumed and stamped "used"; a use with a handler is
held, then confirmed and stamped, or released; a revocation is written to the
ledger and to the status. Each test cancels one call after 0, 1, 2, … turns of
the event loop, by asyncio (``Task.cancel``, as ``asyncio.timeout`` does) and by
anyio, and checks that ledger and status agree once the service settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from contextlib import AsyncExitStack
from datetime import timedelta

import anyio
import pytest
from pgserver import fresh_database

from actionlinks.actions import Action
from actionlinks.clock import SystemClock
from actionlinks.home import initialize
from actionlinks.service import Service
from actionlinks.settings import Settings

pytestmark = pytest.mark.integration

TURNS = [*range(40), *range(40, 4000, 80)]
"""Every turn while SQLite writes; then, while a server answers, one in 80 (a
round trip to it takes tens of turns), up to after every call below ended."""


RUN = secrets.token_hex(4)  # subjects of this run (a Redis ledger is shared)


@pytest.fixture(params=["sqlite", "postgres", "postgres+redis"])
async def service(request, tmp_path):
    env = {"ACTIONLINKS_HOME": str(tmp_path)}
    async with AsyncExitStack() as stack:
        if request.param != "sqlite":
            env["ACTIONLINKS_DATABASE_URL"] = await stack.enter_async_context(
                fresh_database()
            )
        if request.param.endswith("redis"):
            env["ACTIONLINKS_LEDGER_URL"] = "redis://127.0.0.1:6379/0"
        async for service in _service(env):
            yield service


async def _service(env):
    settings = Settings.from_env(env)
    initialize(settings, clock=SystemClock())
    service = Service(settings, clock=SystemClock())
    ran: list[str] = []

    async def handler(claims, form):
        for _ in range(3):  # a handler that takes a few turns
            await asyncio.sleep(0)
        ran.append(claims.token_id)

    service.registry.declare(
        Action(name="invite", ttl=timedelta(days=1), handler=handler)
    )
    async with service:
        service.ran = ran  # type: ignore[attr-defined]
        yield service


async def cancelled_after(turns: int, call, *args, by: str) -> None:
    """Run ``call(*args)``, cancelled after ``turns`` turns of the loop.

    Its outcome (done, rejected, cancelled) is what the ledger says after.
    """
    if by == "asyncio":
        task = asyncio.get_running_loop().create_task(call(*args))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return
    async with anyio.create_task_group() as tasks:

        async def run() -> None:
            with contextlib.suppress(Exception):
                await call(*args)

        tasks.start_soon(run)
        for _ in range(turns):
            await asyncio.sleep(0)
        tasks.cancel_scope.cancel()


def assert_both(outcomes: set[bool], by: str) -> None:
    """asyncio's cancellation landed both before and after the writes.

    (anyio's lands only at a checkpoint, and the calls reach their writes
    before the first one: each outcome is checked all the same.)
    """
    assert outcomes == ({False, True} if by == "asyncio" else outcomes | {True})


async def sweep(service, by: str, action: str, cancel, outcome) -> None:
    """For each turn count: mint a link, run ``cancel(link)`` cancelled then.

    ``cancel`` gives the call and its argument; once the service settled,
    ``outcome(link, turns)`` checks that ledger and status agree and says
    whether the writes were made.
    """
    outcomes = set()
    for turns in TURNS:
        link = await service.registry.mint(action, subject=f"{RUN}-{turns}")
        call, argument = cancel(link)
        await cancelled_after(turns, call, argument, by=by)
        await service.registry.settled()
        outcomes.add(await outcome(link, turns))
    assert_both(outcomes, by)


@pytest.mark.parametrize("by", ["asyncio", "anyio"])
async def test_a_use_that_runs_nothing_is_consumed_and_stamped_or_neither(service, by):
    async def outcome(link, turns) -> bool:
        entry = await service.ledger.lookup(link.claims.token_id)
        status = await service.links.status(link.claims.token_id)
        used = entry is not None and entry.state == "used"
        assert used == (status.state == "used"), (turns, entry, status)
        assert status.used_at is None or used
        return used

    redeem = service.registry.redeem
    await sweep(
        service, by, "email-confirm", lambda link: (redeem, link.token), outcome
    )


@pytest.mark.parametrize("by", ["asyncio", "anyio"])
async def test_a_held_use_is_confirmed_and_stamped_or_released(service, by):
    async def outcome(link, turns) -> bool:
        token_id = link.claims.token_id
        entry = await service.ledger.lookup(token_id)
        status = await service.links.status(token_id)
        assert entry is None or entry.state == "used", (turns, entry)
        used = entry is not None
        assert used == (status.state == "used"), (turns, entry, status)
        assert used == (token_id in service.ran), turns
        if not used:  # released: the person can try again at once
            await service.registry.redeem(link.token)
        return used

    redeem = service.registry.redeem
    await sweep(service, by, "invite", lambda link: (redeem, link.token), outcome)


@pytest.mark.parametrize("by", ["asyncio", "anyio"])
async def test_a_revocation_reaches_ledger_and_status_together(service, by):
    async def outcome(link, turns) -> bool:
        entry = await service.ledger.lookup(link.claims.token_id)
        status = await service.links.status(link.claims.token_id)
        revoked = entry is not None and entry.state == "revoked"
        assert revoked == (status.revoked_at is not None), (turns, entry, status)
        return revoked

    revoke = service.registry.revoke
    await sweep(
        service,
        by,
        "email-confirm",
        lambda link: (revoke, link.claims.token_id),
        outcome,
    )


@pytest.mark.parametrize("by", ["asyncio", "anyio"])
async def test_a_subject_revocation_reaches_ledger_and_status_together(service, by):
    async def outcome(link, turns) -> bool:
        claims = link.claims
        standing = await service.ledger.standing(
            claims.token_id,
            subject=claims.subject,
            action=claims.action,
            issued_at=claims.issued_at,
        )
        status = await service.links.status(claims.token_id)
        revoked = standing is not None and standing.state == "revoked"
        assert revoked == (status.revoked_at is not None), (turns, standing, status)
        return revoked

    revoke = service.registry.revoke_subject
    await sweep(
        service,
        by,
        "email-confirm",
        lambda link: (revoke, link.claims.subject),
        outcome,
    )
