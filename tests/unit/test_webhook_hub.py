"""The webhook hub: endpoints, fan-out, idempotent ids, rotation, disabling."""

from __future__ import annotations

import json
from datetime import timedelta

import anyio
import pytest

from actionlinks.errors import ConflictError, InvalidArgumentError, NotFoundError
from actionlinks.outbox import Attempt, Message, RetryPolicy
from actionlinks.stores import MemoryStore
from actionlinks.webhooks.delivery import WebhookDeliverer, endpoint_of
from actionlinks.webhooks.hub import MAX_ENDPOINTS, WebhookHub

URL = "https://hooks.example.com/in"


def no_client():
    raise AssertionError("the hub never sends")


@pytest.fixture
def store(clock):
    return MemoryStore(clock=clock)


def make_hub(store, clock, *, allow_private=False, woken=None):
    deliverer = WebhookDeliverer(
        endpoints=store.endpoints, outbox=store.outbox, client=no_client, clock=clock
    )
    return WebhookHub(
        endpoints=store.endpoints,
        outbox=store.outbox,
        deliverer=deliverer,
        clock=clock,
        policy=RetryPolicy([timedelta(0), timedelta(seconds=5)]),
        allow_private=allow_private,
        wake=(lambda: woken.append(1)) if woken is not None else (lambda: None),
    )


@pytest.fixture
def hub(store, clock):
    return make_hub(store, clock)


async def test_a_registered_endpoint_gets_a_fresh_secret_shown_once(hub):
    """add_endpoint returns a whsec_ secret; listing never shows it."""
    record, secret = await hub.add_endpoint(URL, event_types=["user.created"])
    assert secret.startswith("whsec_")
    assert record.endpoint_id.startswith("ep_")
    assert record.event_types == ("user.created",)
    assert record.jwt_header == "authorization"
    assert secret not in repr(await hub.endpoints())
    other, other_secret = await hub.add_endpoint(URL)
    assert other_secret != secret
    assert other.event_types is None


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("http://hooks.example.com/in", "url"),  # plain http off this machine
        ("https://127.0.0.1/in", "url"),  # loopback
        ("https://10.0.0.8/in", "url"),  # private
        ("https://[::1]/in", "url"),
        ("https://169.254.169.254/latest", "url"),  # cloud metadata
        ("ftp://hooks.example.com/in", "url"),
        ("https://user:pw@hooks.example.com/in", "url"),
        ("not a url", "url"),
        ("https://hooks.example.com/" + "a" * 2048, "url"),
        ("https://127.1/in", "url"),  # 127.0.0.1 to the C resolver
        ("https://2130706433/in", "url"),
        ("https://0x7f000001/in", "url"),
        ("https://0/in", "url"),
        ("https://ｌｏｃａｌｈｏｓｔ/in", "url"),  # noqa: RUF001 - fullwidth, on purpose
        ("https://0177.0.0.1/in", "url"),
        ("https://127.0.0.1./in", "url"),  # a trailing dot
        ("https://localhost./in", "url"),
        ("https://foo.localhost/in", "url"),  # RFC 6761: all of .localhost
        ("https://127\u30020\u30020\u30021/in", "url"),  # ideographic full stops
        ("https://0x7f.1./in", "url"),
        ("https://ex\udc80.com/in", "url"),  # a lone surrogate
    ],
)
async def test_unsafe_destinations_are_refused_with_the_field(hub, url, field):
    """Private, loopback, link-local and non-https destinations are refused."""
    with pytest.raises(InvalidArgumentError) as caught:
        await hub.add_endpoint(url)
    assert caught.value.field == field
    assert await hub.endpoints() == []


async def test_private_destinations_are_accepted_when_allowed(store, clock):
    """ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE lets a local receiver register."""
    hub = make_hub(store, clock, allow_private=True)
    record, _ = await hub.add_endpoint("http://127.0.0.1:9999/hooks")
    assert record.url == "http://127.0.0.1:9999/hooks"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"event_types": []}, "event_types"),
        ({"event_types": ["no spaces"]}, "event_types"),
        ({"event_types": ["x" * 101]}, "event_types"),
        ({"event_types": ["a"] * 101}, "event_types"),
        ({"event_types": [3]}, "event_types"),
        ({"jwt_header": "bad header"}, "jwt_header"),
        ({"jwt_header": "webhook-signature"}, "jwt_header"),
        ({"jwt_header": "Webhook-Id"}, "jwt_header"),
        ({"jwt_header": "transfer-encoding"}, "jwt_header"),
        ({"jwt_header": "host"}, "jwt_header"),
        ({"jwt_header": "webhook-foo"}, "jwt_header"),
        ({"jwt_header": "svix-signature"}, "jwt_header"),
    ],
)
async def test_bad_subscriptions_and_headers_are_refused(hub, kwargs, field):
    """Event types and the JWT header name are validated."""
    with pytest.raises(InvalidArgumentError) as caught:
        await hub.add_endpoint(URL, **kwargs)
    assert caught.value.field == field


async def test_endpoints_are_bounded(hub, monkeypatch):
    """A service keeps at most MAX_ENDPOINTS endpoints."""
    monkeypatch.setattr("actionlinks.webhooks.hub.MAX_ENDPOINTS", 2)
    await hub.add_endpoint(URL)
    await hub.add_endpoint(URL)
    with pytest.raises(InvalidArgumentError):
        await hub.add_endpoint(URL)
    assert MAX_ENDPOINTS == 1000


async def test_a_message_fans_out_to_the_endpoints_subscribed_to_its_type(store, clock):
    """Without endpoint_id: every enabled endpoint that takes the type."""
    woken = []
    hub = make_hub(store, clock, woken=woken)
    users, _ = await hub.add_endpoint(URL, event_types=["user.created"])
    orders, _ = await hub.add_endpoint(URL, event_types=["order.paid"])
    everything, _ = await hub.add_endpoint(URL)
    gone, _ = await hub.add_endpoint(URL)
    await hub.disable(gone.endpoint_id)
    record = await hub.send("user.created", {"id": 7})
    assert [d.destination for d in record.deliveries] == [
        users.endpoint_id,
        everything.endpoint_id,
    ]
    assert woken == [1]
    body = json.loads(record.message.body)
    assert body["type"] == "user.created"
    assert body["data"] == {"id": 7}
    assert body["timestamp"].endswith("Z")
    only = await hub.send("order.paid", {"n": 1}, endpoint_id=orders.endpoint_id)
    assert [d.destination for d in only.deliveries] == [orders.endpoint_id]


async def test_a_given_id_makes_sending_idempotent(hub, clock):
    """The same id and event return the stored message; another event conflicts."""
    await hub.add_endpoint(URL)
    first = await hub.send("user.created", {"id": 7}, message_id="evt-42")
    clock.advance(timedelta(seconds=3))
    again = await hub.send("user.created", {"id": 7}, message_id="evt-42")
    assert again.message == first.message
    assert len(again.deliveries) == 1
    for other in ({"id": 8}, {"id": True}, {"id": 7.0}):  # 7 == True-ish in Python
        with pytest.raises(ConflictError) as caught:
            await hub.send("user.created", other, message_id="evt-42")
        assert caught.value.code == "message_exists"
    with pytest.raises(InvalidArgumentError):
        await hub.send("user.created", {}, message_id="bad id!")


async def test_a_mails_id_is_never_a_webhook_messages(hub, store, clock):
    """em_ ids are the mail's: refused as a webhook id (422); a stored mail
    under an id is a conflict to enqueue, never read as a webhook payload."""
    await hub.add_endpoint(URL)
    with pytest.raises(InvalidArgumentError) as caught:
        await hub.send("invite", {}, message_id="em_abc")
    assert caught.value.field == "id"
    mail = Message(
        message_id="em_abc",
        channel="mail",
        kind="invite",
        body=b"From: a@example.com\r\n\r\nnot JSON",
        created_at=clock.now(),
    )
    await store.outbox.enqueue(mail, ["a@example.org"], due_at=clock.now())
    with pytest.raises(ConflictError):
        await hub.enqueue("invite", {}, destinations=["ep_1"], message_id="em_abc")


async def test_sending_to_a_missing_or_disabled_endpoint_is_refused(hub):
    """An unknown endpoint is 404, a disabled one a conflict; nothing stored."""
    with pytest.raises(NotFoundError):
        await hub.send("user.created", {}, endpoint_id="ep_nope")
    record, _ = await hub.add_endpoint(URL)
    await hub.disable(record.endpoint_id)
    with pytest.raises(ConflictError) as caught:
        await hub.send("user.created", {}, endpoint_id=record.endpoint_id)
    assert caught.value.code == "endpoint_disabled"
    assert await hub.messages() == []


async def test_bad_events_are_refused(hub):
    """The event type and the payload are validated."""
    with pytest.raises(InvalidArgumentError) as caught:
        await hub.send("", {})
    assert caught.value.field == "event_type"
    with pytest.raises(InvalidArgumentError) as caught:
        await hub.send("user.created", ["not", "an", "object"])  # type: ignore[arg-type]
    assert caught.value.field == "payload"


async def test_rotation_signs_with_both_secrets_until_the_overlap_ends(hub, clock):
    """After a rotation both secrets sign; after the overlap only the new one."""
    record, old = await hub.add_endpoint(URL)
    rotated, new = await hub.rotate(record.endpoint_id, overlap=timedelta(hours=1))
    assert rotated.signing_secrets(clock.now()) == [new, old]
    headers = endpoint_of(rotated, now=clock.now()).headers(
        message_id="msg_1", timestamp=1, body=b"{}"
    )
    assert len(headers["webhook-signature"].split()) == 2
    clock.advance(timedelta(hours=1))
    assert rotated.signing_secrets(clock.now()) == [new]
    with pytest.raises(NotFoundError):
        await hub.rotate("ep_nope")


async def test_disabling_fails_pending_deliveries_and_enabling_takes_new_ones(hub):
    """A disabled endpoint's pending messages fail; enabled again, it receives."""
    record, _ = await hub.add_endpoint(URL)
    sent = await hub.send("user.created", {})
    await hub.disable(record.endpoint_id)
    failed = await hub.message(sent.message.message_id)
    assert failed.state == "failed"
    assert "disabled" in failed.deliveries[0].history[0].error
    with pytest.raises(ConflictError):
        await hub.redeliver(sent.message.message_id)
    await hub.enable(record.endpoint_id)
    again = await hub.redeliver(sent.message.message_id)
    assert again.state == "pending"
    assert again.message.message_id == sent.message.message_id


async def test_unknown_messages_and_endpoints_are_not_found(hub):
    """message, redeliver, disable and enable name what is missing."""
    with pytest.raises(NotFoundError) as caught:
        await hub.message("msg_nope")
    assert caught.value.what == "message"
    with pytest.raises(NotFoundError):
        await hub.redeliver("msg_nope")
    for operation in (hub.disable, hub.enable):
        with pytest.raises(NotFoundError) as caught:
            await operation("ep_nope")
        assert caught.value.what == "endpoint"
    await hub.add_endpoint(URL)
    sent = await hub.send("user.created", {})
    with pytest.raises(NotFoundError):
        await hub.redeliver(sent.message.message_id, endpoint_id="ep_other")


async def test_disabled_endpoints_do_not_count_against_the_limit(hub, monkeypatch):
    """1000 enabled endpoints at most; disabled ones count only toward 10 times
    as many kept."""
    monkeypatch.setattr("actionlinks.webhooks.hub.MAX_ENDPOINTS", 2)
    monkeypatch.setattr("actionlinks.webhooks.hub.MAX_KEPT_ENDPOINTS", 3)
    first, _ = await hub.add_endpoint(URL)
    await hub.add_endpoint(URL)
    await hub.disable(first.endpoint_id)
    await hub.add_endpoint(URL)
    with pytest.raises(InvalidArgumentError):
        await hub.add_endpoint(URL)


async def test_redelivery_goes_to_the_endpoints_that_failed(store, clock, hub):
    """Without endpoint_id: the failed deliveries only; none failed: all again."""
    first, _ = await hub.add_endpoint(URL)
    second, _ = await hub.add_endpoint(URL)
    sent = await hub.send("a", {})
    message_id = sent.message.message_id
    for delivery in await store.outbox.claim(
        channel="webhook",
        holder="w",
        limit=2,
        per_destination=2,
        skip=(),
        lease=timedelta(seconds=20),
    ):
        failed = delivery.destination == second.endpoint_id
        await store.outbox.record(
            delivery.delivery_id,
            holder="w",
            attempt=Attempt(
                at=clock.now(), latency=timedelta(0), status=500 if failed else 200
            ),
            state="failed" if failed else "delivered",
            next_attempt_at=None,
        )
    again = await hub.redeliver(message_id)
    states = {d.destination: d.state for d in again.deliveries}
    assert states == {first.endpoint_id: "delivered", second.endpoint_id: "pending"}


async def test_enabling_and_concurrent_adds_respect_the_limit(hub, monkeypatch):
    """Enabling past the limit is refused; adds at once never pass it."""
    monkeypatch.setattr("actionlinks.webhooks.hub.MAX_ENDPOINTS", 3)
    first, _ = await hub.add_endpoint(URL)
    await hub.disable(first.endpoint_id)
    refused = []

    async def add():
        try:
            await hub.add_endpoint(URL)
        except InvalidArgumentError:
            refused.append(1)

    async with anyio.create_task_group() as tasks:
        for _ in range(6):
            tasks.start_soon(add)
    assert sum(e.is_enabled for e in await hub.endpoints()) == 3
    assert len(refused) == 3
    with pytest.raises(InvalidArgumentError):
        await hub.enable(first.endpoint_id)
