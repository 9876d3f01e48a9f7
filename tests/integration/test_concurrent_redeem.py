"""One-time use across processes on the embedded SQLite ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest

from actionlinks.actions import Action
from actionlinks.clock import SystemClock
from actionlinks.errors import HandlerError
from actionlinks.home import initialize
from actionlinks.service import Service
from actionlinks.settings import Settings

pytestmark = pytest.mark.integration

PROCESSES = 5
PER_PROCESS = 10

WORKER = textwrap.dedent(
    """
    import asyncio, json, pathlib, sys, time
    from actionlinks.clock import SystemClock
    from actionlinks.errors import TokenAlreadyUsedError
    from actionlinks.service import Service
    from actionlinks.settings import Settings

    home, token, go = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])

    async def main():
        settings = Settings.from_env({"ACTIONLINKS_HOME": home})
        async with Service(settings, clock=SystemClock()) as service:
            while not go.exists():
                await asyncio.sleep(0.005)
            results = await asyncio.gather(
                *(service.registry.redeem(token) for _ in range(PER_PROCESS)),
                return_exceptions=True,
            )
        won = sum(not isinstance(r, BaseException) for r in results)
        used = sum(isinstance(r, TokenAlreadyUsedError) for r in results)
        other = [repr(r) for r in results if isinstance(r, BaseException)
                 and not isinstance(r, TokenAlreadyUsedError)]
        print(json.dumps({"won": won, "used": used, "other": other}))

    asyncio.run(main())
    """
).replace("PER_PROCESS", str(PER_PROCESS))


@pytest.fixture
def settings(tmp_path):
    settings = Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})
    initialize(settings, clock=SystemClock())
    return settings


async def test_fifty_concurrent_redeems_from_several_processes_succeed_once(
    settings, tmp_path
):
    """5 processes x 10 concurrent redeems of one token: exactly one succeeds."""
    async with Service(settings, clock=SystemClock()) as service:
        link = await service.registry.mint("invite", subject="user:42")
    go = tmp_path / "go"
    workers = [
        subprocess.Popen(  # noqa: ASYNC220 - started, then awaited below in order
            [sys.executable, "-c", WORKER, str(settings.home), link.token, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    go.touch()
    reports = []
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        reports.append(json.loads(out))
    assert sum(r["won"] for r in reports) == 1
    assert sum(r["used"] for r in reports) == PROCESSES * PER_PROCESS - 1
    assert [r["other"] for r in reports] == [[]] * PROCESSES


async def test_failing_handler_leaves_the_link_usable_on_sqlite(settings):
    """A handler that raises releases the use in the database; a retry succeeds."""
    async with Service(settings, clock=SystemClock()) as service:
        outcomes = iter([RuntimeError("mail server down"), None])

        async def handler(claims, form):
            failure = next(outcomes)
            if failure is not None:
                raise failure
            return claims.subject

        service.registry.declare(
            Action(name="invite", ttl=timedelta(days=7), handler=handler)
        )
        link = await service.registry.mint("invite", subject="user:42")
        with pytest.raises(HandlerError):
            await service.registry.redeem(link.token)
        assert await service.ledger.lookup(link.claims.token_id) is None
        assert (await service.registry.redeem(link.token)).result == "user:42"
        assert (await service.ledger.lookup(link.claims.token_id)).state == "used"
