"""Standard Webhooks signing, destination checks and sending (actionlinks.webhooks)."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import anyio
import httpcore
import httpx
import pytest
from standardwebhooks import Webhook
from support import (
    SPEC_BODY,
    SPEC_ID,
    SPEC_SECRET,
    SPEC_SIGNATURE,
    SPEC_TIMESTAMP,
)

from actionlinks.actions import Action
from actionlinks.clock import SystemClock
from actionlinks.dispatch import ServiceDispatcher
from actionlinks.errors import ConfigurationError, WebhookDeliveryError
from actionlinks.webhooks import (
    PublicOnlyTransport,
    WebhookEndpoint,
    WebhookSender,
    generate_secret,
    guard,
    secret_bytes,
    sign,
)
from actionlinks.webhooks.guard import (
    DestinationRefusedError,
    PublicOnlyBackend,
    check_url,
    is_public_address,
)

URL = "https://app.example.test/hooks"


def test_signature_matches_the_specification_example():
    """sign() reproduces the spec's published signature byte for byte."""
    key = secret_bytes(SPEC_SECRET)
    assert (
        sign(key, message_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY)
        == SPEC_SIGNATURE
    )


@pytest.mark.parametrize(
    "secret", ["MfKQ9r8G", "whsec_!!!", "whsec_AAAA", "whsec_" + "A" * 100]
)
def test_malformed_secrets_are_refused(secret):
    """Secrets must be whsec_ + base64 of 24-64 bytes."""
    with pytest.raises(ConfigurationError):
        secret_bytes(secret)


def test_generated_secret_is_usable():
    """generate_secret() makes a 32-byte whsec_ secret."""
    assert len(secret_bytes(generate_secret())) == 32


def test_body_is_signed_exactly_as_sent():
    """The signature covers the exact bytes (no re-serialisation)."""
    key = secret_bytes(SPEC_SECRET)
    compact = json.dumps({"a": 1}, separators=(",", ":")).encode()
    spaced = json.dumps({"a": 1}).encode()
    assert sign(key, message_id="m", timestamp=1, body=compact) != sign(
        key, message_id="m", timestamp=1, body=spaced
    )


def test_message_id_of_an_event_is_derived_keyed_and_stable():
    """Issue 6 item 6: one event, one id; keyed, so it hides what was sent."""
    endpoint = WebhookEndpoint(URL, secret=generate_secret())
    first = endpoint.message_id("link.used", "jti-1", b'{"password":"a"}')
    assert first == endpoint.message_id("link.used", "jti-1", b'{"password":"a"}')
    assert first.startswith("msg_")
    assert first != endpoint.message_id("link.used", "jti-1", b'{"password":"b"}')
    assert first != endpoint.message_id("link.used", "jti-2", b'{"password":"a"}')
    assert first != endpoint.message_id("link.renewed", "jti-1", b'{"password":"a"}')
    other = WebhookEndpoint(URL, secret=generate_secret())
    assert first != other.message_id("link.used", "jti-1", b'{"password":"a"}')


# --- sending ----------------------------------------------------------------------


async def send_through(respond, url: str = URL, secret: str | None = None) -> object:
    """Send one event through ``respond``: the status or the delivery error."""
    endpoint = WebhookEndpoint(url, secret=secret or generate_secret())
    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as client:
        sender = WebhookSender(client, clock=SystemClock())
        try:
            return await sender.send(
                endpoint, event_type="link.used", message_id="msg_1", data={"x": 1}
            )
        except WebhookDeliveryError as exc:
            return exc


async def test_sent_event_verifies_with_the_reference_library():
    """A sent event carries Standard Webhooks headers the reference verifies."""
    secret = generate_secret()
    seen = []

    def receive(request):
        seen.append(request)
        return httpx.Response(204)

    assert await send_through(receive, secret=secret) == 204
    (request,) = seen
    payload = Webhook(secret).verify(request.content, dict(request.headers))
    assert payload == {
        "type": "link.used",
        "timestamp": payload["timestamp"],
        "data": {"x": 1},
    }
    assert request.headers["webhook-id"] == "msg_1"


@pytest.mark.parametrize("status", [301, 400, 410, 500, 503])
async def test_non_2xx_answers_are_delivery_failures(status):
    """Redirects are not followed; anything but 2xx is a delivery error."""
    error = await send_through(
        lambda request: httpx.Response(status, headers={"location": "https://x.test"})
    )
    assert isinstance(error, WebhookDeliveryError)
    assert error.status_code == status


async def test_unreachable_receiver_is_a_delivery_error():
    """A transport error becomes WebhookDeliveryError without a status."""

    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    error = await send_through(refuse)
    assert isinstance(error, WebhookDeliveryError)
    assert error.status_code is None


async def test_errors_and_reprs_never_show_the_urls_query():
    """A token in the handler URL's query stays out of messages and reprs."""
    url = "https://app.example.test/hooks?key=s3cret"
    error = await send_through(lambda request: httpx.Response(500), url=url)
    for text in (str(error), repr(WebhookEndpoint(url, secret=generate_secret()))):
        assert "s3cret" not in text
        assert "app.example.test/hooks" in text


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.test/",
        "http:///nohost",
        "file:///etc/passwd",
        "http://app.example.test/hooks",  # plain http to another machine
        "https://user:pw@app.example.test/",
        "https://[::1/",
    ],
)
def test_handler_urls_must_be_https_except_to_localhost(url):
    """Issue 6 item 18: webhooks carry what people typed; http only to loopback."""
    with pytest.raises(ConfigurationError):
        check_url(url, what="a webhook URL")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/hooks", "http://localhost/x", "http://[::1]:80/"]
)
def test_plain_http_to_this_machine_is_allowed(url):
    """Loopback receivers (development, a sidecar) may use plain http."""
    assert check_url(url, what="a webhook URL") == url


# --- destinations -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "::1",
        "fe80::1%eth0",
        "fd00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::127.0.0.1",  # IPv4-compatible
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a9fe:a9fe",  # local-use NAT64
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo client 127.0.0.1
        "::ffff:0:7f00:1",  # IPv4-translated 127.0.0.1
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
        "fec0::1",  # site-local
        "224.0.0.1",
        "not an address",
    ],
)
def test_addresses_that_reach_private_hosts_are_not_public(address):
    """Issue 6 item 14: IPv6 forms that embed a private IPv4 are refused too."""
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700:4700::1111", "64:ff9b::808:808", "2002:808:808::"]
)
def test_public_addresses_are_allowed(address):
    """Public IPv4, IPv6 and the NAT64/6to4 forms of public IPv4 pass."""
    assert is_public_address(address)


class _FakeStream(httpcore.AsyncNetworkStream):
    def __init__(self, peer):
        self.peer = peer
        self.closed = False

    async def read(self, max_bytes, timeout=None):  # pragma: no cover - unused
        return b""

    async def write(self, buffer, timeout=None):  # pragma: no cover - unused
        return None

    async def aclose(self):
        self.closed = True

    def get_extra_info(self, info):
        return self.peer if info == "server_addr" else None


class _FakeBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, peer):
        self.peer = peer
        self.hosts = []
        self.stream = None

    async def connect_tcp(self, host, port, *args, **kwargs):
        self.hosts.append(host)
        self.stream = _FakeStream(self.peer)
        return self.stream

    async def sleep(self, seconds):  # pragma: no cover - unused
        return None


def _resolve_to(monkeypatch, *addresses):
    def resolve(host, port, *args, **kwargs):
        return [(10 if ":" in a else 2, 1, 6, "", (a, port)) for a in addresses]

    monkeypatch.setattr(guard.socket, "getaddrinfo", resolve)


async def test_connection_goes_to_the_checked_address_not_a_new_lookup(monkeypatch):
    """Issue 6 item 14: the backend connects to the IP it checked (no rebinding)."""
    _resolve_to(monkeypatch, "8.8.8.8")
    inner = _FakeBackend(peer=("8.8.8.8", 443))
    stream = await PublicOnlyBackend(inner).connect_tcp("app.example.test", 443)
    assert stream is inner.stream
    assert inner.hosts == ["8.8.8.8"]


async def test_a_name_with_any_private_address_is_refused(monkeypatch):
    """One private answer among public ones refuses the destination."""
    _resolve_to(monkeypatch, "8.8.8.8", "10.0.0.5")
    inner = _FakeBackend(peer=("8.8.8.8", 443))
    with pytest.raises(DestinationRefusedError):
        await PublicOnlyBackend(inner).connect_tcp("app.example.test", 443)
    assert inner.hosts == []


async def test_the_connected_peer_is_checked_again(monkeypatch):
    """A connection whose peer turns out private is closed and refused."""
    _resolve_to(monkeypatch, "8.8.8.8")
    inner = _FakeBackend(peer=("127.0.0.1", 443))
    with pytest.raises(DestinationRefusedError):
        await PublicOnlyBackend(inner).connect_tcp("app.example.test", 443)
    assert inner.stream.closed


async def test_unix_sockets_are_never_destinations():
    """The backend refuses local sockets outright."""
    with pytest.raises(DestinationRefusedError):
        await PublicOnlyBackend(_FakeBackend(peer=None)).connect_unix_socket("/x")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_real_client_refuses_loopback_before_sending(host):
    """Issue 6 item 14: through the real transport, loopback is refused at connect."""
    endpoint = WebhookEndpoint(f"http://{host}:9/hooks", secret=generate_secret())
    async with httpx.AsyncClient(transport=PublicOnlyTransport()) as client:
        with pytest.raises(WebhookDeliveryError, match="not a public address"):
            await WebhookSender(client, clock=SystemClock()).send(
                endpoint, event_type="t", message_id="m", data={}
            )


# --- the service's dispatcher -------------------------------------------------------


async def test_queued_uses_of_a_multi_use_link_are_one_message_per_form(issuer):
    """A replayed one-click POST cannot fill the outbox: the same use queued
    twice is one message id; another form is another message."""
    queued = []

    class Queue:
        async def enqueue(self, event_type, payload, *, destinations, message_id):
            queued.append((message_id, destinations))

    action = Action(
        name="unsubscribe",
        ttl=timedelta(days=90),
        one_time=False,
        handler_url=URL,
        handler_secret=generate_secret(),
        delivery="queued",
    )
    claims = issuer.mint(action.purpose, subject="user:42").claims
    dispatcher = ServiceDispatcher(clock=SystemClock(), client=_no_client, queue=Queue)
    for form in ({"List-Unsubscribe": "One-Click"},) * 3 + ({"other": "1"},):
        assert await dispatcher.use(action, claims, form) is None
    ids = [message_id for message_id, _ in queued]
    assert ids[0] == ids[1] == ids[2] != ids[3]
    assert queued[0][1] == ["action:unsubscribe"]


def _no_client():
    raise AssertionError("a queued use sends nothing at once")


async def test_link_used_webhook_verifies_and_keeps_its_id_on_retry(issuer):
    """Issue 6 item 6: a failed use and its retry carry the same webhook-id;
    another submission (the audit's different password) is another message."""
    secret = generate_secret()
    seen = []
    statuses = [500, 204, 204]

    def receive(request):
        seen.append(request)
        return httpx.Response(statuses.pop(0))

    action = Action(
        name="invite",
        ttl=timedelta(days=1),
        handler_url=URL,
        handler_secret=secret,
    )
    claims = issuer.mint(action.purpose, subject="user:42", data={"team": 7}).claims
    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        dispatcher = ServiceDispatcher(clock=SystemClock(), client=lambda: client)
        with pytest.raises(WebhookDeliveryError):
            await dispatcher.use(action, claims, {"note": "hi"})
        assert await dispatcher.use(action, claims, {"note": "hi"}) == 204
        assert await dispatcher.use(action, claims, {"note": "bye"}) == 204
    first, second, third = seen
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert third.headers["webhook-id"] != first.headers["webhook-id"]
    payload = Webhook(secret).verify(second.content, dict(second.headers))
    assert payload["type"] == "link.used"
    assert payload["data"]["sub"] == "user:42"
    assert payload["data"]["form"] == {"note": "hi"}
    assert payload["data"]["data"] == {"team": 7}
    assert dispatcher.describe(action) == f"a webhook to {URL}"


def test_dispatcher_refuses_a_handler_url_without_a_secret():
    """A handler URL needs a whsec_ secret; the error names the action."""
    dispatcher = ServiceDispatcher(clock=SystemClock(), client=lambda: None)
    action = Action(name="invite", ttl=timedelta(days=1), handler_url=URL)
    with pytest.raises(ConfigurationError, match="handler_secret"):
        dispatcher.describe(action)


async def test_renewed_link_is_announced_to_the_handler_url(issuer):
    """A handler_url action announces renewals as link.renewed with the new URL."""
    from actionlinks.actions import Link

    secret = generate_secret()
    seen = []

    def receive(request):
        seen.append(request)
        return httpx.Response(200)

    action = Action(
        name="invite", ttl=timedelta(days=1), handler_url=URL, handler_secret=secret
    )
    minted = issuer.mint(action.purpose, subject="ada")
    link = Link(
        url=f"https://l.test/a/{minted.token}", token=minted.token, claims=minted.claims
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        dispatcher = ServiceDispatcher(clock=SystemClock(), client=lambda: client)
        await dispatcher.renewer(action)(link)
    (request,) = seen
    payload = Webhook(secret).verify(request.content, dict(request.headers))
    assert payload["type"] == "link.renewed"
    assert payload["data"]["url"] == link.url
    assert request.headers["webhook-id"] == dispatcher.endpoint(action).message_id(
        "link.renewed", minted.claims.token_id
    )
    assert payload["data"]["replaces"] is None
    assert dispatcher.renewer(Action(name="invite", ttl=timedelta(days=1))) is None


async def test_names_that_do_not_resolve_are_connection_errors(monkeypatch):
    """A DNS failure is a connection error, not a refusal and not a crash."""

    def fail(host, port, *args, **kwargs):
        raise OSError("no such host")

    monkeypatch.setattr(guard.socket, "getaddrinfo", fail)
    with pytest.raises(httpcore.ConnectError) as caught:
        await PublicOnlyBackend(_FakeBackend(peer=None)).connect_tcp("x.invalid", 443)
    assert not isinstance(caught.value, DestinationRefusedError)


async def test_the_next_public_address_is_tried_when_one_fails(monkeypatch):
    """Several public addresses: a refused connection moves on to the next."""
    _resolve_to(monkeypatch, "8.8.8.8", "8.8.4.4")

    class FirstFails(_FakeBackend):
        async def connect_tcp(self, host, port, *args, **kwargs):
            if host == "8.8.8.8":
                self.hosts.append(host)
                raise httpcore.ConnectError("refused")
            return await super().connect_tcp(host, port)

    inner = FirstFails(peer=("8.8.4.4", 443))
    await PublicOnlyBackend(inner).connect_tcp("app.example.test", 443)
    assert inner.hosts == ["8.8.8.8", "8.8.4.4"]
    inner = FirstFails(peer=None)
    _resolve_to(monkeypatch, "8.8.8.8")
    with pytest.raises(httpcore.ConnectError):
        await PublicOnlyBackend(inner).connect_tcp("app.example.test", 443)


async def test_a_dns_server_that_never_answers_holds_one_thread_for_a_while(
    monkeypatch,
):
    """Concurrent lookups of one host share one thread, and every wait ends."""
    calls = []

    def hang(host, port, *args, **kwargs):
        calls.append(host)
        time.sleep(1)
        raise OSError("timed out")

    monkeypatch.setattr(guard.socket, "getaddrinfo", hang)
    monkeypatch.setattr(guard, "RESOLVE_TIMEOUT", 0.1)
    failures = []

    async def connect():
        try:
            await PublicOnlyBackend(_FakeBackend(peer=None)).connect_tcp(
                "slow.example.test", 443
            )
        except httpcore.ConnectError as exc:
            failures.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tasks:
            for _ in range(20):
                tasks.start_soon(connect)
    assert len(failures) == 20
    assert calls == ["slow.example.test"]
    # For a while the name fails at once: no thread, no wait, no new lookup.
    with anyio.fail_after(0.05), pytest.raises(httpcore.ConnectError) as again:
        await PublicOnlyBackend(_FakeBackend(peer=None)).connect_tcp(
            "slow.example.test", 443
        )
    assert "timed out recently" in str(again.value)
    assert calls == ["slow.example.test"]


@pytest.mark.parametrize(
    "host", ["127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0", "10.1", "[::1]"]
)
def test_every_spelling_of_a_private_address_is_a_private_literal(host):
    """The C resolver reads 127.1, 2130706433 or 0x7f000001 as 127.0.0.1."""
    assert guard.is_private_literal(host)


def test_names_and_public_addresses_are_not_private_literals():
    """Only literal addresses are judged before connecting."""
    assert not guard.is_private_literal("hooks.example.com")
    assert not guard.is_private_literal("8.8.8.8")
    assert not guard.is_private_literal("deadbeef")


async def test_an_address_literal_needs_no_lookup(monkeypatch):
    """A literal destination connects without asking DNS."""

    def fail(host, port, *args, **kwargs):
        raise AssertionError("no lookup for a literal")

    monkeypatch.setattr(guard.socket, "getaddrinfo", fail)
    backend = _FakeBackend(peer=("8.8.8.8", 443))
    await PublicOnlyBackend(backend).connect_tcp("8.8.8.8", 443)
    assert backend.hosts == ["8.8.8.8"]


async def test_allowing_private_destinations_checks_nothing_but_resolves_the_same(
    monkeypatch,
):
    """ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE connects to 127.0.0.1, through the
    same bounded lookups."""
    _resolve_to(monkeypatch, "127.0.0.1")
    inner = _FakeBackend(peer=("127.0.0.1", 8080))
    await PublicOnlyBackend(inner, allow_private=True).connect_tcp("app.test", 8080)
    assert inner.hosts == ["127.0.0.1"]
    with pytest.raises(DestinationRefusedError):
        await PublicOnlyBackend(_FakeBackend(peer=None)).connect_tcp("app.test", 8080)
