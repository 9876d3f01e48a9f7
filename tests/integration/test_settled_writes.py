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
import logging
import secrets
import sqlite3
import threading
from contextlib import AsyncExitStack
from datetime import timedelta

import anyio
import pytest
from pgserver import fresh_database
from support import expired_of

from actionlinks import receiver as receiver_module
from actionlinks import registry as registry_module
from actionlinks import settle as settle_module
from actionlinks.actions import Action
from actionlinks.clock import SystemClock
from actionlinks.errors import (
    ActionLinksError,
    LedgerUnavailableError,
    ServiceClosedError,
    TokenAlreadyUsedError,
)
from actionlinks.home import initialize
from actionlinks.receiver import WebhookReceiver
from actionlinks.registry import ActionRegistry
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.webhooks import (
    LedgerReplayGuard,
    WebhookVerifier,
    generate_secret,
    secret_bytes,
    signature_headers,
)

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


# --- found by a hostile audit: each failed before its fix --------------------

BASE = "https://links.example.test"


def registry_on(store, issuer, clock, *, handler=None) -> ActionRegistry:
    """A registry over ``store``; with ``handler``, an ``invite`` action runs it."""
    registry = ActionRegistry(
        issuer, ledger=store.ledger, journal=store.links, base_url=BASE, clock=clock
    )
    if handler is not None:
        registry.declare(Action(name="invite", ttl=timedelta(days=1), handler=handler))
    return registry


def other_process_writes(path, seconds: float) -> None:
    """Hold the write lock of the SQLite file at ``path`` for ``seconds``."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(seconds, lambda: other.execute("COMMIT")).start()


@pytest.mark.parametrize("deadline", ["asyncio", "anyio"])
async def test_a_shutdown_deadline_does_not_split_a_settled_use(tmp_path, deadline):
    """A use cancelled while its consume waits for the lock, then a close under
    a deadline shorter than the wait: the close waits for the use's writes
    (it cancelled them, and the store closed under them)."""
    settings = Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})
    initialize(settings, clock=SystemClock())
    service = Service(settings, clock=SystemClock(), deliver=False)
    await service.open()
    warm = await service.registry.mint("email-confirm", subject="earlier")
    await service.registry.redeem(warm.token)  # (the ledger's purge is done)
    link = await service.registry.mint("email-confirm", subject="someone")
    other_process_writes(next(tmp_path.rglob("*.db")), 0.3)
    redeeming = asyncio.get_running_loop().create_task(
        service.registry.redeem(link.token)
    )
    for _ in range(1000):  # until its consume waits in the worker thread
        if service.store.database._tasks:
            break
        await asyncio.sleep(0.001)
    redeeming.cancel()  # the request timed out
    with contextlib.suppress(asyncio.CancelledError):
        await redeeming
    if deadline == "asyncio":
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(service.aclose(), 0.05)
    else:
        with anyio.move_on_after(0.05):
            await service.aclose()
    async with service:
        token_id = link.claims.token_id
        entry = await service.ledger.lookup(token_id)
        status = await service.links.status(token_id)
    assert entry is not None
    assert entry.state == "used"
    assert status.state == "used"


async def test_a_handler_that_ran_is_not_released_by_a_late_cancellation(
    sqlite_store, issuer, clock, monkeypatch
):
    """asyncio cancels the request just after the handler returned, while the
    hold's last heartbeat finishes: the use stands (it was released, and a
    second click ran the handler again)."""
    monkeypatch.setattr(registry_module, "HOLD_FOR", timedelta(seconds=0.3))
    ledger = sqlite_store.ledger
    beating = asyncio.Event()
    real_extend = type(ledger).extend

    async def slow_extend(self, token_id, *, hold):  # a store answering slowly
        beating.set()
        await asyncio.sleep(0.2)
        return await real_extend(self, token_id, hold=hold)

    monkeypatch.setattr(type(ledger), "extend", slow_extend)
    ran = []
    returned = asyncio.Event()

    async def handler(claims, form):
        await beating.wait()  # a long handler: it ends while a beat is under way
        ran.append(claims.token_id)
        returned.set()

    registry = registry_on(sqlite_store, issuer, clock, handler=handler)
    link = await registry.mint("invite", subject="someone")
    task = asyncio.get_running_loop().create_task(registry.redeem(link.token))
    await returned.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await registry.settled()
    with pytest.raises(TokenAlreadyUsedError):
        await registry.redeem(link.token)  # the same link, clicked again
    assert len(ran) == 1
    status = await sqlite_store.links.status(link.claims.token_id)
    assert status.state == "used"


async def test_a_used_link_clicked_again_by_a_cancelled_request_logs_no_failure(
    sqlite_store, issuer, clock, caplog
):
    registry = registry_on(sqlite_store, issuer, clock)
    link = await registry.mint("email-confirm", subject="someone")
    await registry.redeem(link.token)
    caplog.set_level(logging.INFO)
    for turns in range(6):
        await cancelled_after(turns, registry.redeem, link.token, by="asyncio")
        await registry.settled()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_service_closes_while_another_loop_writes(tmp_path):
    """A service belongs to the loop that opened it; another thread's loop that
    uses it anyway does not break its close (the close awaited that loop's
    tasks and raised), and hears a typed error once the store is closed."""
    settings = Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})
    initialize(settings, clock=SystemClock())
    service = Service(settings, clock=SystemClock(), deliver=False)
    minted, locked, revoking, closed = (threading.Event() for _ in range(4))
    outcome: dict[str, object] = {}

    async def other_loop() -> None:
        link = await service.registry.mint("email-confirm", subject="someone")
        minted.set()
        await asyncio.to_thread(locked.wait, 10)
        task = asyncio.get_running_loop().create_task(
            service.registry.revoke(link.claims.token_id)
        )
        await asyncio.sleep(0.05)  # the revocation waits for the write lock
        revoking.set()
        try:
            await task
            outcome["revoke"] = "done"
        except ActionLinksError as exc:
            outcome["revoke"] = type(exc).__name__
        closed.wait(10)

    async def main() -> None:
        async with service:
            thread = threading.Thread(target=asyncio.run, args=(other_loop(),))
            thread.start()
            await asyncio.to_thread(minted.wait, 10)
            other_process_writes(next(tmp_path.rglob("*.db")), 0.5)
            locked.set()
            await asyncio.to_thread(revoking.wait, 10)
            try:
                await service.aclose()
            finally:
                closed.set()
            await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
            await service.open()  # for the async with's own close

    asyncio.run(main())
    assert outcome["revoke"] in {"done", "ServiceClosedError"}


@pytest.mark.parametrize("by", ["asyncio", "anyio"])
@pytest.mark.parametrize("action", ["invite", "magic-signin"])
async def test_a_renewal_is_final_and_delivered_or_can_be_asked_again(
    sqlite_store, issuer, clock, by, action
):
    delivered = []

    async def renew(link):
        await asyncio.sleep(0)
        delivered.append(link.replaces)

    registry = registry_on(sqlite_store, issuer, clock)
    registry.declare(
        Action(
            name=action,
            ttl=timedelta(minutes=15),
            renew=renew,
            revokes_previous=action == "magic-signin",
        )
    )
    for turns in range(40):
        link = await registry.mint(action, subject=f"u{turns}")
        clock.advance(timedelta(hours=1))
        expired = expired_of(link)
        await cancelled_after(turns, registry.renew, expired, by=by)
        await registry.settled()
        marker = await sqlite_store.ledger.lookup(f"renew:{link.claims.token_id}")
        if marker is None:
            assert await registry.is_renewable(expired), turns
        else:
            assert marker.state == "used", turns
            assert link.claims.token_id in delivered, turns


async def test_a_confirmation_stops_trying_once_the_store_is_closed(
    sqlite_store, issuer, clock, monkeypatch
):
    """A held use's confirmation rides out a stalled store, but not a closed
    one: the close gave up waiting and the caller hears it (it kept trying
    against the closed store until the hold's end, minutes after the close)."""
    monkeypatch.setattr(settle_module, "CLOSE_WAIT", 0.5)
    monkeypatch.setattr(registry_module, "HOLD_FOR", timedelta(minutes=2))
    ledger = sqlite_store.ledger
    real_confirm = type(ledger).confirm
    closed = False

    async def stalled_confirm(self, token_id, *, holder):
        if not closed:  # the database is unreachable for now
            raise LedgerUnavailableError("the database failed: stalled")
        return await real_confirm(self, token_id, holder=holder)

    monkeypatch.setattr(type(ledger), "confirm", stalled_confirm)
    ran = asyncio.Event()

    async def handler(claims, form):
        ran.set()

    registry = registry_on(sqlite_store, issuer, clock, handler=handler)
    link = await registry.mint("invite", subject="someone")
    redeeming = asyncio.get_running_loop().create_task(registry.redeem(link.token))
    await ran.wait()
    await registry.settled()  # the close: waits CLOSE_WAIT, then gives up
    await sqlite_store.aclose()
    closed = True
    with anyio.move_on_after(30):  # a hang guard, far beyond a retry's pause
        with pytest.raises(ServiceClosedError):
            await redeeming
    assert redeeming.done()
    await registry.settled()
    assert registry._settler._tasks == set()


def webhook_scope(body: bytes, headers: dict[str, str]) -> dict:
    return {
        "type": "http",
        "method": "POST",
        "path": "/hooks",
        "headers": [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in {**headers, "content-length": str(len(body))}.items()
        ],
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("t", 80),
        "client": ("c", 1),
        "root_path": "",
    }


async def post_webhook(app, body: bytes, headers: dict[str, str]) -> int | None:
    """One POST through the ASGI app; its status (None if it never answered)."""
    sent = []
    delivered = False

    async def receive():
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        return {"type": "http.disconnect"}  # pragma: no cover

    async def send(message):
        sent.append(message)

    await app(webhook_scope(body, headers), receive, send)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    return starts[0]["status"] if starts else None


async def test_a_handled_webhook_is_not_handled_again_after_a_late_cancellation(
    sqlite_store, clock, monkeypatch
):
    """asyncio cancels the request after the handler returned, while the claim's
    last heartbeat finishes: the message is recorded as handled (the claim was
    left held, and once it lapsed the sender's retry ran the handler again)."""
    monkeypatch.setattr(receiver_module, "KEEP_EVERY", timedelta(seconds=0.05))
    secret = generate_secret()
    body = b'{"type":"invoice.paid","data":{"id":7}}'
    beating = asyncio.Event()

    class SlowKeep(LedgerReplayGuard):
        async def keep(self, message_id, claim):  # a store answering slowly
            beating.set()
            await asyncio.sleep(0.2)
            await super().keep(message_id, claim)

    handled = []
    returned = asyncio.Event()

    async def handle(webhook, request):
        await beating.wait()  # it ends while a heartbeat is under way
        handled.append(webhook.message_id)
        returned.set()

    app = WebhookReceiver(
        WebhookVerifier(secrets=secret, clock=clock),
        handle,
        replays=SlowKeep(sqlite_store.ledger, clock=clock),
    )

    def headers():
        return signature_headers(
            secret_bytes(secret),
            message_id="msg_1",
            timestamp=int(clock.now().timestamp()),
            body=body,
        )

    task = asyncio.get_running_loop().create_task(post_webhook(app, body, headers()))
    await returned.wait()
    task.cancel()  # uvicorn's graceful-shutdown timeout, or asyncio.timeout
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await app._settler.wait()
    entry = await sqlite_store.ledger.lookup("webhook:msg_1")
    assert entry is not None
    assert entry.state == "used"
    clock.advance(timedelta(minutes=6))  # any hold would have lapsed
    assert await post_webhook(app, body, headers()) == 200  # a duplicate
    assert handled == ["msg_1"]


async def test_a_failed_handler_is_logged_though_its_request_is_cancelled_meanwhile(
    sqlite_store, issuer, clock, monkeypatch, caplog
):
    """asyncio cancels the request while the failed handler's use is released:
    the failure is in the log all the same (it was logged after the release)."""
    ledger = sqlite_store.ledger
    real_release = type(ledger).release
    releasing = asyncio.Event()

    async def slow_release(self, token_id, *, holder):
        releasing.set()
        await asyncio.sleep(0.1)
        return await real_release(self, token_id, holder=holder)

    monkeypatch.setattr(type(ledger), "release", slow_release)

    async def handler(claims, form):
        raise ValueError("the app's own bug")

    registry = registry_on(sqlite_store, issuer, clock, handler=handler)
    link = await registry.mint("invite", subject="someone")
    caplog.set_level(logging.WARNING)
    task = asyncio.get_running_loop().create_task(registry.redeem(link.token))
    await releasing.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await registry.settled()
    assert any("the app's own bug" in r.getMessage() for r in caplog.records)
    assert await ledger.lookup(link.claims.token_id) is None  # released
