"""Issue 7, item 2: the Starlette receiver helper — raw body, verification,
replay rejection by message id (bounded memory or the ledger)."""

from __future__ import annotations

from datetime import timedelta

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
    WebhookVerifier,
    generate_secret,
    secret_bytes,
    signature_headers,
)

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
        assert await guard.claim(message_id, until=until)
    assert await guard.claim("c", until=until) is None
    assert await guard.claim("a", until=until)  # forgotten: the memory held two


async def test_the_ledger_guard_shares_claims_and_lets_failures_retry(clock):
    """A claim is a hold in the ledger: taken once, released on failure."""
    ledger = MemoryLedger(clock=clock)
    guard = LedgerReplayGuard(ledger, clock=clock)
    until = clock.now() + timedelta(minutes=11)
    claim = await guard.claim("msg_1", until=until)
    assert await guard.claim("msg_1", until=until) is None
    await guard.forget("msg_1", claim)
    claim = await guard.claim("msg_1", until=until)
    await guard.done("msg_1", claim)
    clock.advance(timedelta(minutes=10))
    assert await guard.claim("msg_1", until=until) is None


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
