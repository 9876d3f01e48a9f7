"""Issue 7, item 2: the Starlette receiver helper — raw body, verification,
replay rejection by message id (bounded memory or the ledger)."""

from __future__ import annotations

from datetime import timedelta
from functools import partial

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from actionlinks.clock import SystemClock
from actionlinks.ledger import MemoryLedger
from actionlinks.receiver import WebhookReceiver
from actionlinks.webhooks import (
    LedgerReplayGuard,
    MemoryReplayGuard,
    ReceivedWebhook,
    WebhookVerifier,
    generate_secret,
    secret_bytes,
    signature_headers,
)
from actionlinks.webhooks.receiving import Claim

BODY = b'{"type":"invoice.paid","data":{"id":7}}'


def signed(secret, *, message_id="msg_1", body=BODY):
    return signature_headers(
        secret_bytes(secret),
        message_id=message_id,
        timestamp=int(SystemClock().now().timestamp()),
        body=body,
    )


@pytest.fixture
def secret():
    return generate_secret()


def app_for(secret, handled, *, replays=None, fail=None, max_body=1024 * 1024):
    async def handle(webhook, request):
        if fail:
            outcome = fail.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            if outcome is not None:
                return JSONResponse({}, status_code=outcome)
        handled.append(webhook)
        return None

    receiver = WebhookReceiver(
        WebhookVerifier(secrets=secret), handle, replays=replays, max_body=max_body
    )
    return Starlette(routes=[Route("/hooks", receiver, methods=["POST"])])


def test_an_authentic_webhook_reaches_the_handler_once(secret):
    """204 the first time; the replay gets 200 duplicate and no second run."""
    handled = []
    with TestClient(app_for(secret, handled)) as client:
        first = client.post("/hooks", content=BODY, headers=signed(secret))
        again = client.post("/hooks", content=BODY, headers=signed(secret))
    assert first.status_code == 204
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    assert [w.message_id for w in handled] == ["msg_1"]
    assert handled[0].body == BODY


def test_anything_not_authentic_is_a_plain_401(secret):
    """Wrong secret, tampered body, no headers: the same answer, nothing run."""
    handled = []
    with TestClient(app_for(secret, handled)) as client:
        answers = [
            client.post("/hooks", content=BODY, headers=signed(generate_secret())),
            client.post("/hooks", content=BODY + b" ", headers=signed(secret)),
            client.post("/hooks", content=BODY),
        ]
    assert {(a.status_code, a.text) for a in answers} == {
        (401, '{"error":"invalid_webhook"}')
    }
    assert handled == []


def test_a_failed_handling_is_retried_with_the_same_id(secret):
    """Handler raised or answered 5xx: the sender's retry is handled."""
    handled = []
    app = app_for(secret, handled, fail=[RuntimeError("db down"), 503, None])
    with TestClient(app, raise_server_exceptions=False) as client:
        codes = [
            client.post("/hooks", content=BODY, headers=signed(secret)).status_code
            for _ in range(4)
        ]
    assert codes == [500, 503, 204, 200]
    assert len(handled) == 1


def test_oversized_bodies_are_refused_before_verification(secret):
    """A body over the cap is 413 whether or not it declares its length."""
    handled = []
    with TestClient(app_for(secret, handled, max_body=16)) as client:
        response = client.post("/hooks", content=BODY, headers=signed(secret))
    assert response.status_code == 413


async def test_the_memory_guard_is_bounded():
    """The oldest ids go first once the memory is full."""
    guard = MemoryReplayGuard(limit=2)
    until = SystemClock().now() + timedelta(minutes=5)
    for message_id in ("a", "b", "c"):
        await guard.done(message_id, await guard.claim(message_id, until=until))
    assert await guard.claim("c", until=until) == "handled"
    assert isinstance(await guard.claim("a", until=until), Claim)  # forgotten


async def test_the_ledger_guard_shares_claims_and_lets_failures_retry(clock):
    """A claim is a hold in the ledger: taken once, released on failure."""
    ledger = MemoryLedger(clock=clock)
    guard = LedgerReplayGuard(ledger, clock=clock)
    until = clock.now() + timedelta(minutes=11)
    claim = await guard.claim("msg_1", until=until)
    assert await guard.claim("msg_1", until=until) == "in_progress"
    await guard.forget("msg_1", claim)
    claim = await guard.claim("msg_1", until=until)
    clock.advance(timedelta(minutes=4))
    await guard.keep("msg_1", claim)
    clock.advance(timedelta(minutes=4))  # past the first hold: kept alive
    assert await guard.claim("msg_1", until=until) == "in_progress"
    await guard.done("msg_1", claim)
    clock.advance(timedelta(minutes=2))
    assert await guard.claim("msg_1", until=until) == "handled"


def test_the_receiver_can_share_replays_through_the_ledger(secret, clock):
    """Two receivers (processes) on one ledger handle a message once."""
    ledger = MemoryLedger(clock=SystemClock())
    handled = []
    apps = [
        app_for(secret, handled, replays=LedgerReplayGuard(ledger)) for _ in range(2)
    ]
    for app in apps:
        with TestClient(app) as client:
            client.post("/hooks", content=BODY, headers=signed(secret))
    assert len(handled) == 1


# --- the third audit -----------------------------------------------------------------


async def test_a_retry_while_the_first_is_handled_is_told_to_come_back(secret):
    """In flight is not done: 409 with Retry-After, then the retry is handled."""
    import anyio
    import httpx

    gate, runs = anyio.Event(), []

    async def handle(webhook, request):
        runs.append(1)
        if len(runs) == 1:
            await gate.wait()
            raise RuntimeError("db down")

    receiver = WebhookReceiver(WebhookVerifier(secrets=secret), handle)
    app = Starlette(routes=[Route("/hooks", receiver, methods=["POST"])])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(
                partial(client.post, "/hooks", content=BODY, headers=signed(secret))
            )
            await anyio.sleep(0.05)
            busy = await client.post("/hooks", content=BODY, headers=signed(secret))
            gate.set()
        later = await client.post("/hooks", content=BODY, headers=signed(secret))
    assert (busy.status_code, busy.headers["retry-after"]) == (409, "5")
    assert later.status_code == 204
    assert len(runs) == 2


def test_a_handled_id_is_remembered_for_days_not_minutes(secret, clock):
    """A person's retry days later carries the same id: not handled again."""
    handled = []

    async def handle(webhook, request):
        handled.append(webhook)

    verifier = WebhookVerifier(secrets=secret, clock=clock)
    receiver = WebhookReceiver(verifier, handle, replays=MemoryReplayGuard(clock=clock))
    app = Starlette(routes=[Route("/hooks", receiver, methods=["POST"])])

    def at_now():
        return signature_headers(
            secret_bytes(secret),
            message_id="msg_1",
            timestamp=int(clock.now().timestamp()),
            body=BODY,
        )

    with TestClient(app) as client:
        assert client.post("/hooks", content=BODY, headers=at_now()).status_code == 204
        clock.advance(timedelta(days=3))
        again = client.post("/hooks", content=BODY, headers=at_now())
    assert again.json() == {"status": "duplicate"}
    assert len(handled) == 1


def test_a_handler_that_returns_no_response_is_forgotten(secret):
    """A wrong return value is a 500 and the message can still be handled."""
    outcomes = [{"ok": True}, None]

    async def handle(webhook, request):
        return outcomes.pop(0)

    receiver = WebhookReceiver(WebhookVerifier(secrets=secret), handle)
    app = Starlette(routes=[Route("/hooks", receiver, methods=["POST"])])
    with TestClient(app, raise_server_exceptions=False) as client:
        first = client.post("/hooks", content=BODY, headers=signed(secret))
        retry = client.post("/hooks", content=BODY, headers=signed(secret))
    assert (first.status_code, retry.status_code) == (500, 204)


def test_a_received_webhooks_repr_hides_the_body():
    """The body may hold a password: the repr never shows it."""
    webhook = ReceivedWebhook(
        message_id="m",
        timestamp=SystemClock().now(),
        scheme="v1",
        body=b'{"password":"hunter2"}',
    )
    assert "hunter2" not in repr(webhook)


def test_a_unicode_digit_content_length_is_not_a_500(secret):
    """Audit: '²' passes str.isdigit() but is no length: never int() it."""
    import asyncio

    async def handle(webhook, request):
        return None

    receiver = WebhookReceiver(WebhookVerifier(secrets=secret), handle)
    sent = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/",
        "headers": [(b"content-length", "\u00b2".encode("latin-1"))],
        "query_string": b"",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("t", 80),
        "client": ("c", 1),
        "root_path": "",
    }

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(receiver(scope, receive, send))
    assert sent[0]["status"] == 401
