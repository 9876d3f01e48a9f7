"""One webhook attempt: what the deliverer sends and how it judges the answer."""

from __future__ import annotations

import gzip
from dataclasses import replace
from datetime import timedelta

import anyio
import httpx
import pytest
from standardwebhooks import Webhook

from actionlinks.outbox import RetryPolicy
from actionlinks.outbox.model import RESPONSE_EXCERPT
from actionlinks.stores import MemoryStore
from actionlinks.webhooks import WebhookEndpoint
from actionlinks.webhooks.delivery import WebhookDeliverer
from actionlinks.webhooks.hub import WebhookHub

URL = "https://hooks.example.com/in"


class Answers:
    """A MockTransport handler answering from a list; records the requests."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    async def __call__(self, request):
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else httpx.Response(204)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return await answer()
        return answer


class Unread(httpx.AsyncBaseTransport):
    """MockTransport without its read-ahead: the answer streams as on a wire."""

    def __init__(self, handler):
        self.handler = handler

    async def handle_async_request(self, request):
        await request.aread()
        answer = await self.handler(request)
        if isinstance(answer.stream, httpx.AsyncByteStream) and not isinstance(
            answer.stream, httpx.ByteStream
        ):
            return answer
        # httpx reads a Response(content=…) at once: stream it as a wire would.
        return httpx.Response(
            answer.status_code, headers=answer.headers, stream=Wire(answer.content)
        )


class Wire(httpx.AsyncByteStream):
    def __init__(self, body):
        self.body = body

    async def __aiter__(self):
        for start in range(0, len(self.body), 4096):
            yield self.body[start : start + 4096]


@pytest.fixture
def store(clock):
    return MemoryStore(clock=clock)


@pytest.fixture
async def setup(store, clock):
    answers = Answers()
    client = httpx.AsyncClient(transport=Unread(answers))
    named = {"action:invite": WebhookEndpoint(URL, secret="whsec_" + "B" * 40)}
    deliverer = WebhookDeliverer(
        endpoints=store.endpoints,
        outbox=store.outbox,
        client=lambda: client,
        clock=clock,
        jwt=lambda **claims: "header.payload.signature",
        named=named.get,
    )
    hub = WebhookHub(
        endpoints=store.endpoints,
        outbox=store.outbox,
        deliverer=deliverer,
        clock=clock,
        policy=RetryPolicy([timedelta(0)]),
    )
    yield hub, deliverer, answers
    await client.aclose()


async def first_delivery(hub, store, event="user.created", **kwargs):
    record = await hub.send(event, {"id": 1}, **kwargs)
    return (await store.outbox.read(record.message.message_id)).deliveries[0]


async def test_a_2xx_is_delivered_signed_over_the_stored_bytes(setup, store, clock):
    """The exact stored body, a v1 signature the reference verifies, the JWT."""
    hub, deliverer, answers = setup
    _, secret = await hub.add_endpoint(URL)
    delivery = await first_delivery(hub, store)
    result = await deliverer(delivery)
    assert result.outcome == "delivered"
    assert result.attempt.status == 204
    [request] = answers.requests
    assert request.content == delivery.message.body
    headers = dict(request.headers)
    signed = Webhook(secret).sign(
        delivery.message.message_id, clock.now(), request.content.decode()
    )
    assert headers["webhook-signature"] == signed
    assert headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
    assert headers["webhook-id"] == delivery.message.message_id
    assert headers["authorization"] == "Bearer header.payload.signature"


async def test_another_jwt_header_or_none_is_used_as_registered(setup, store):
    """jwt_header names the carrier (no Bearer prefix) or turns it off."""
    hub, deliverer, answers = setup
    await hub.add_endpoint(URL, event_types=["a"], jwt_header="X-Webhook-JWT")
    await hub.add_endpoint(URL, event_types=["b"], jwt_header=None)
    await deliverer(await first_delivery(hub, store, "a"))
    await deliverer(await first_delivery(hub, store, "b"))
    first, second = answers.requests
    assert first.headers["x-webhook-jwt"] == "header.payload.signature"
    assert "authorization" not in first.headers
    assert "authorization" not in second.headers
    assert "x-webhook-jwt" not in second.headers


async def test_a_huge_answer_is_cut_and_retry_after_is_read(setup, store):
    """Only the start of an answer is kept; Retry-After comes back with it."""
    hub, deliverer, answers = setup
    await hub.add_endpoint(URL)
    answers.answers.append(
        httpx.Response(429, headers={"retry-after": "30"}, content=b"x" * 100_000)
    )
    result = await deliverer(await first_delivery(hub, store))
    assert result.outcome == "retry"
    assert result.retry_after == timedelta(seconds=30)
    assert result.attempt.response == "x" * RESPONSE_EXCERPT


async def test_a_compressed_answer_is_never_inflated(setup, store):
    """identity is asked for; a gzip bomb is kept as at most 1 KiB of raw bytes."""
    hub, deliverer, answers = setup
    await hub.add_endpoint(URL)
    bomb = gzip.compress(gzip.compress(b"\0" * 50_000_000))
    answers.answers.append(
        httpx.Response(
            500, headers={"content-encoding": "gzip, gzip"}, stream=Wire(bomb)
        )
    )
    result = await deliverer(await first_delivery(hub, store))
    assert answers.requests[0].headers["accept-encoding"] == "identity"
    assert result.outcome == "retry"
    assert len(result.attempt.response) <= RESPONSE_EXCERPT
    assert result.attempt.response.startswith("\x1f")  # gzip's magic: not inflated


async def test_a_2xx_whose_body_stalls_is_still_delivered(setup, store, monkeypatch):
    """The receiver accepted: a slow body after the status changes nothing."""
    hub, deliverer, answers = setup
    await hub.add_endpoint(URL)
    monkeypatch.setattr(
        "actionlinks.webhooks.sender.ATTEMPT_LIMIT", timedelta(milliseconds=50)
    )

    class Stalling(httpx.AsyncByteStream):
        async def __aiter__(self):
            yield b"ok"
            await anyio.sleep(5)
            yield b"never"

    answers.answers.append(httpx.Response(200, stream=Stalling()))
    result = await deliverer(await first_delivery(hub, store))
    assert result.outcome == "delivered"


async def test_no_answer_and_a_slow_answer_are_retried(setup, store, monkeypatch):
    """A connection error, and an answer slower than the attempt's limit."""
    hub, deliverer, answers = setup
    await hub.add_endpoint(URL)

    async def slow():
        await anyio.sleep(5)
        return httpx.Response(204)

    monkeypatch.setattr(
        "actionlinks.webhooks.sender.ATTEMPT_LIMIT", timedelta(milliseconds=50)
    )
    answers.answers += [httpx.ConnectError("refused"), slow, httpx.ReadTimeout("t")]
    delivery = await first_delivery(hub, store)
    refused = await deliverer(delivery)
    assert (refused.outcome, refused.attempt.error) == (
        "retry",
        "could not be reached: refused",
    )
    slowed = await deliverer(delivery)
    assert slowed.outcome == "retry"
    assert slowed.attempt.error == "did not answer within 0 s"
    timed_out = await deliverer(delivery)
    assert timed_out.attempt.error == "did not answer in time"


async def test_410_disables_a_registered_endpoint_and_fails_its_backlog(setup, store):
    """Gone: this delivery fails, the endpoint is disabled, the rest fail too."""
    hub, deliverer, answers = setup
    record, _ = await hub.add_endpoint(URL)
    answers.answers.append(httpx.Response(410))
    delivery = await first_delivery(hub, store)
    waiting = await hub.send("user.created", {"id": 2})
    result = await deliverer(delivery)
    assert result.outcome == "failed"
    endpoint = await hub.endpoint(record.endpoint_id)
    assert endpoint.disabled_reason == "410 Gone"
    assert (await hub.message(waiting.message.message_id)).state == "failed"


async def test_gone_missing_or_disabled_destinations_are_refused_without_a_request(
    setup, store, caplog
):
    """Nothing is posted to a removed, disabled or unknown destination."""
    hub, deliverer, answers = setup
    record, _ = await hub.add_endpoint(URL)
    delivery = await first_delivery(hub, store)
    await store.endpoints.update(
        record.endpoint_id, lambda r: r.disabled(r.created_at, "deleted")
    )
    disabled = await deliverer(delivery)
    assert disabled.outcome == "failed"
    assert disabled.attempt.error == "the endpoint is disabled (deleted)"
    store.endpoints._endpoints.clear()
    removed = await deliverer(delivery)
    assert removed.attempt.error == "the endpoint was removed"
    unknown = await deliverer(_to(delivery, "action:nope"))
    assert unknown.attempt.error == "no action with this handler_url any more"
    assert "nope has no handler_url any more; restore it" in caplog.text
    assert answers.requests == []


async def test_a_named_endpoint_that_answers_410_is_not_disabled(setup, store):
    """An action's handler URL is configuration: 410 fails the delivery only."""
    hub, deliverer, answers = setup
    await hub.add_endpoint(URL)
    delivery = _to(await first_delivery(hub, store), "action:invite")
    answers.answers.append(httpx.Response(410))
    result = await deliverer(delivery)
    assert result.outcome == "failed"
    assert [e.is_enabled for e in await hub.endpoints()] == [True]


def _to(delivery, destination):
    return replace(delivery, destination=destination)
