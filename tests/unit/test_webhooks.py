"""Standard Webhooks signing and the handler_url dispatcher (actionlinks.webhooks)."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
import pytest
from standardwebhooks import Webhook

from actionlinks.clock import SystemClock
from actionlinks.errors import ConfigurationError, WebhookDeliveryError
from actionlinks.webhooks import (
    WebhookHandler,
    check_destination,
    generate_secret,
    secret_bytes,
    sign,
)

# The example of the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_specification_example():
    """sign() reproduces the spec's published signature byte for byte."""
    key = secret_bytes(SPEC_SECRET)
    assert (
        sign(key, message_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY)
        == SPEC_SIGNATURE
    )


@pytest.mark.parametrize("secret", ["MfKQ9r8G", "whsec_!!!", "whsec_AAAA"])
def test_malformed_secrets_are_refused(secret):
    """Secrets must be whsec_ + base64 of at least 24 bytes."""
    with pytest.raises(ConfigurationError):
        secret_bytes(secret)


def test_generated_secret_is_usable():
    """generate_secret() makes a 32-byte whsec_ secret."""
    assert len(secret_bytes(generate_secret())) == 32


async def test_handler_posts_a_body_the_reference_library_verifies(clock, issuer):
    """A link.used webhook verifies with the standardwebhooks library."""
    from actionlinks.tokens import Purpose

    secret = generate_secret()
    seen = []

    def receive(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    purpose = Purpose(name="invite", ttl=timedelta(days=1), max_ttl=timedelta(days=1))
    claims = issuer.mint(purpose, subject="user:42", data={"team": 7}).claims
    async with httpx.AsyncClient(transport=httpx.MockTransport(receive)) as client:
        handler = WebhookHandler(
            "https://app.example.test/hooks",
            secret=secret,
            client=client,
            clock=SystemClock(),  # the reference verifier checks against real time
            allow_private=True,
        )
        assert await handler(claims, {"note": "hi"}) == 204
    (request,) = seen
    payload = Webhook(secret).verify(request.content, dict(request.headers))
    assert payload["type"] == "link.used"
    assert payload["data"]["sub"] == "user:42"
    assert payload["data"]["form"] == {"note": "hi"}
    assert payload["data"]["data"] == {"team": 7}
    assert secret not in repr(handler)


async def failed_delivery(
    respond, clock, url: str = "https://app.example.test/hooks"
) -> tuple[WebhookDeliveryError, WebhookHandler]:
    """Send one event through ``respond``; the delivery error and the handler."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as client:
        handler = WebhookHandler(
            url,
            secret=generate_secret(),
            client=client,
            clock=clock,
            allow_private=True,
        )
        with pytest.raises(WebhookDeliveryError) as caught:
            await handler.send("link.used", {"x": 1})
    return caught.value, handler


@pytest.mark.parametrize("status", [301, 400, 410, 500, 503])
async def test_non_2xx_answers_are_handler_failures(clock, status):
    """Redirects are not followed; anything but 2xx is a delivery error."""
    error, _ = await failed_delivery(
        lambda request: httpx.Response(status, headers={"location": "https://x.test"}),
        clock,
    )
    assert error.status_code == status


async def test_unreachable_receiver_is_a_delivery_error(clock):
    """A transport error becomes WebhookDeliveryError without a status."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    error, _ = await failed_delivery(refuse, clock)
    assert error.status_code is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.1.2.3/",
        "http://[::1]:8000/",
        "http://169.254.169.254/",
    ],
)
async def test_private_destinations_are_refused_unless_allowed(url):
    """Loopback, private and link-local targets need explicit permission."""
    with pytest.raises(ConfigurationError, match="private"):
        await check_destination(url, allow_private=False)
    await check_destination(url, allow_private=True)


@pytest.mark.parametrize(
    "url", ["ftp://x.test/", "http:///nohost", "file:///etc/passwd"]
)
async def test_non_http_destinations_are_refused(url):
    """Only http(s) URLs with a host can receive webhooks."""
    with pytest.raises(ConfigurationError):
        await check_destination(url, allow_private=True)


def test_body_is_signed_exactly_as_sent(clock):
    """The signature covers the exact bytes (no re-serialisation)."""
    key = secret_bytes(SPEC_SECRET)
    compact = json.dumps({"a": 1}, separators=(",", ":")).encode()
    spaced = json.dumps({"a": 1}).encode()
    assert sign(key, message_id="m", timestamp=1, body=compact) != sign(
        key, message_id="m", timestamp=1, body=spaced
    )


async def test_errors_and_repr_never_show_the_urls_query(clock):
    """A token in the handler URL's query stays out of messages and reprs."""
    error, handler = await failed_delivery(
        lambda request: httpx.Response(500),
        clock,
        url="https://user:pw@app.example.test/hooks?key=s3cret",
    )
    for text in (str(error), repr(handler)):
        assert "s3cret" not in text
        assert "pw" not in text
        assert "app.example.test/hooks" in text
