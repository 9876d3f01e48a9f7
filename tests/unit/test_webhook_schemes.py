"""Issue 7, items 1-2: the three signing schemes and the verifier, with the
reference libraries (standardwebhooks, svix) and plain PyJWT as the other side."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import jwt as pyjwt
import pytest
import svix
from standardwebhooks import Webhook
from support import (
    SPEC_BODY,
    SPEC_ID,
    SPEC_SECRET,
    SPEC_SIGNATURE,
    SPEC_TIMESTAMP,
)

from actionlinks.clock import SystemClock
from actionlinks.errors import ConfigurationError, WebhookVerificationError
from actionlinks.keys import KeyRing, PublicKeySet
from actionlinks.testing import FrozenClock
from actionlinks.webhooks import (
    ReceivedWebhook,
    WebhookVerifier,
    generate_secret,
    generate_signing_key,
    mint_webhook_jwt,
    secret_bytes,
    sign,
    sign_v1a,
    signature_headers,
    verify_webhook_jwt,
)
from actionlinks.webhooks.signing import private_key

URL = "https://app.example.test/hooks"
NOW = SystemClock().now().replace(microsecond=0)  # the references read real time
BODY = json.dumps({"type": "link.used", "data": {"sub": "ada"}}).encode()


def headers_for(secrets, *, message_id="msg_1", timestamp=None, body=BODY, keys=()):
    stamp = int((timestamp or NOW).timestamp())
    return signature_headers(
        [secret_bytes(s) for s in secrets],
        message_id=message_id,
        timestamp=stamp,
        body=body,
        signing_keys=[private_key(k) for k in keys],
    )


def verifier(**kwargs):
    return WebhookVerifier(clock=FrozenClock(NOW), **kwargs)


# --- v1 -------------------------------------------------------------------------


def test_v1_matches_the_specification_example():
    """The spec's published signature, and our verifier at the spec's time."""
    key = secret_bytes(SPEC_SECRET)
    assert (
        sign(key, message_id=SPEC_ID, timestamp=SPEC_TIMESTAMP, body=SPEC_BODY)
        == SPEC_SIGNATURE
    )
    at_the_time = WebhookVerifier(
        secrets=SPEC_SECRET,
        clock=FrozenClock(datetime.fromtimestamp(SPEC_TIMESTAMP, UTC)),
    )
    received = at_the_time.verify(
        {
            "webhook-id": SPEC_ID,
            "webhook-timestamp": str(SPEC_TIMESTAMP),
            "webhook-signature": SPEC_SIGNATURE,
        },
        SPEC_BODY,
    )
    assert (received.message_id, received.scheme) == (SPEC_ID, "v1")


def test_a_verified_webhook_carries_its_id_time_scheme_and_exact_body():
    """One entry or several, the first secret or the second: the same webhook."""
    old, new = generate_secret(), generate_secret()
    ours = verifier(secrets=[old, new])
    expected = ReceivedWebhook(
        message_id="msg_1", timestamp=NOW, scheme="v1", body=BODY
    )
    for signed_with in ([old], [new], [new, old]):
        received = ours.verify(headers_for(signed_with), BODY)
        assert received == expected
        assert hash(received) == hash(expected)
        assert received.timestamp == NOW
        assert received.timestamp.tzinfo is UTC
        assert received.body == BODY
    assert "body" not in repr(received)


@pytest.mark.parametrize("library", [Webhook, svix.Webhook])
def test_the_reference_libraries_verify_what_we_sign(library):
    """standardwebhooks and svix accept our headers, with either rotated secret."""
    old, new = generate_secret(), generate_secret()
    # Signed now: the references check against the real clock, and a suite
    # that runs longer than their 5 minutes would leave NOW (import time) stale.
    headers = headers_for([old, new], timestamp=SystemClock().now())
    assert headers["webhook-signature"].count("v1,") == 2
    for secret in (old, new):
        library(secret).verify(BODY, headers)


def test_we_verify_what_the_reference_libraries_sign():
    """Signatures made by standardwebhooks and svix pass our verifier."""
    secret = generate_secret()
    ours = verifier(secrets=secret)
    for name, library in (("webhook", Webhook), ("svix", svix.Webhook)):
        signature = library(secret).sign("msg_ref", NOW, BODY.decode())
        headers = {
            f"{name}-id": "msg_ref",
            f"{name}-timestamp": str(int(NOW.timestamp())),
            f"{name}-signature": signature,
        }
        assert ours.verify(headers, BODY).message_id == "msg_ref"


def test_any_one_valid_entry_passes_whatever_comes_before_it():
    """Unknown versions and malformed entries are skipped, not fatal."""
    secret = generate_secret()
    valid = headers_for([secret])
    junk = "v2,abc v1 v1,!!!notbase64 ,, v1a,AAAA v1,c2hvcnQ="
    valid["webhook-signature"] = f"{junk} {valid['webhook-signature']}"
    assert verifier(secrets=secret).verify(valid, BODY).scheme == "v1"


def test_bodies_need_not_be_utf_8():
    """The signature is over bytes: a binary body verifies."""
    secret, body = generate_secret(), b"\xff\xfe\x00binary"
    headers = headers_for([secret], body=body)
    assert verifier(secrets=secret).verify(headers, body).body == body


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: (h, b + b" "), "no_valid_signature"),
        (lambda h, b: ({**h, "webhook-id": "msg_other"}, b), "no_valid_signature"),
        (lambda h, b: ({**h, "webhook-signature": "v1,"}, b), "no_valid_signature"),
        (
            lambda h, b: ({**h, "webhook-signature": h["webhook-signature"][:-6]}, b),
            "no_valid_signature",
        ),
        (
            lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b),
            "missing_headers",
        ),
        (lambda h, b: ({**h, "webhook-timestamp": "12.5"}, b), "malformed"),
        (lambda h, b: ({**h, "webhook-timestamp": "-1"}, b), "malformed"),
        (lambda h, b: ({**h, "webhook-signature": "v1," * 5000}, b), "malformed"),
    ],
)
def test_tampered_or_malformed_webhooks_are_refused(change, reason):
    """A changed body or id, truncated or missing signatures: one error type."""
    secret = generate_secret()
    headers, body = change(headers_for([secret]), BODY)
    with pytest.raises(WebhookVerificationError) as caught:
        verifier(secrets=secret).verify(headers, body)
    assert caught.value.reason == reason


def test_a_wrong_secret_is_refused():
    """Another endpoint's secret does not verify."""
    headers = headers_for([generate_secret()])
    with pytest.raises(WebhookVerificationError):
        verifier(secrets=generate_secret()).verify(headers, BODY)


@pytest.mark.parametrize(
    ("offset", "reason"),
    [(timedelta(minutes=-6), "stale"), (timedelta(minutes=6), "future")],
)
def test_timestamps_beyond_the_tolerance_are_refused(offset, reason):
    """Five minutes both ways by default; configurable."""
    secret = generate_secret()
    headers = headers_for([secret], timestamp=NOW + offset)
    with pytest.raises(WebhookVerificationError) as caught:
        verifier(secrets=secret).verify(headers, BODY)
    assert caught.value.reason == reason
    lenient = verifier(secrets=secret, tolerance=timedelta(minutes=10))
    assert lenient.verify(headers, BODY)


def test_a_verifier_needs_something_to_verify_with():
    """No scheme, a bad secret, a JWKS without an audience: configuration errors."""
    with pytest.raises(ConfigurationError):
        WebhookVerifier()
    with pytest.raises(ConfigurationError):
        WebhookVerifier(secrets="whsec_short")
    with pytest.raises(ConfigurationError, match="audience"):
        WebhookVerifier(jwks={"keys": []})
    assert "whsec" not in repr(WebhookVerifier(secrets=generate_secret()))


# --- v1a ---------------------------------------------------------------------------


def test_v1a_signs_with_ed25519_and_verifies_with_the_public_key():
    """whsk_/whpk_ keys; the entry is v1a,<base64 of 64 bytes>."""
    private, public = generate_signing_key()
    assert private.startswith("whsk_")
    assert public.startswith("whpk_")
    headers = headers_for([], keys=[private])
    version, encoded = headers["webhook-signature"].split(",")
    assert version == "v1a"
    assert len(base64.b64decode(encoded)) == 64
    assert verifier(public_keys=public).verify(headers, BODY).scheme == "v1a"
    _, other = generate_signing_key()
    with pytest.raises(WebhookVerificationError):
        verifier(public_keys=other).verify(headers, BODY)
    with pytest.raises(WebhookVerificationError):
        verifier(public_keys=public).verify(headers, BODY + b"!")


def test_v1_and_v1a_together_pass_for_either_receiver():
    """One delivery signed both ways satisfies a v1-only and a v1a-only receiver."""
    secret = generate_secret()
    private, public = generate_signing_key()
    headers = headers_for([secret], keys=[private])
    assert verifier(secrets=secret).verify(headers, BODY).scheme == "v1"
    assert verifier(public_keys=public).verify(headers, BODY).scheme == "v1a"
    key = private_key(private)
    entry = sign_v1a(key, message_id="msg_1", timestamp=int(NOW.timestamp()), body=BODY)
    assert entry in headers["webhook-signature"]


# --- the JWT header ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ring():
    return KeyRing.generate(created_at=NOW)


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_plain_pyjwt_verifies_the_jwt_header_from_the_jwks(ring, algorithm):
    """What an API gateway does: PyJWT, the JWKS, the audience. No actionlinks."""
    key = ring.signing_key(algorithm)
    token = mint_webhook_jwt(
        key,
        issuer="https://links.example.test",
        audience=URL,
        message_id="msg_1",
        body=BODY,
        now=SystemClock().now(),
    )
    jwk = pyjwt.PyJWKSet.from_dict(ring.jwks())[key.key_id]
    claims = pyjwt.decode(
        token,
        jwk,
        algorithms=[algorithm],
        audience=URL,
        issuer="https://links.example.test",
    )
    assert claims["jti"] == "msg_1"
    assert claims["exp"] - claims["iat"] <= 300
    assert pyjwt.get_unverified_header(token)["typ"] == "al-webhook+jwt"
    with pytest.raises(pyjwt.InvalidAudienceError):
        pyjwt.decode(token, jwk, algorithms=[algorithm], audience=URL + "/other")


def jwt_for(ring, *, audience=URL, body=BODY, now=NOW, message_id="msg_1"):
    return mint_webhook_jwt(
        ring.signing_key("EdDSA"),
        issuer="https://links.example.test",
        audience=audience,
        message_id=message_id,
        body=body,
        now=now,
    )


def test_the_jwt_binds_the_exact_body_and_the_destination(ring):
    """A tampered body or another URL fails our check of the JWT."""
    keys = ring.public_keys()
    token = jwt_for(ring)
    claims = verify_webhook_jwt(token, keys=keys, audience=URL, body=BODY, now=NOW)
    assert claims.message_id == "msg_1"
    for audience, body in ((URL, BODY + b" "), (URL + "/x", BODY)):
        with pytest.raises(WebhookVerificationError):
            verify_webhook_jwt(token, keys=keys, audience=audience, body=body, now=NOW)


@pytest.mark.parametrize(
    "now", [NOW + timedelta(minutes=6), NOW - timedelta(minutes=2)]
)
def test_an_expired_or_future_jwt_is_refused(ring, now):
    """exp is at most 5 minutes after iat; a token from the future is refused."""
    token = jwt_for(ring)
    with pytest.raises(WebhookVerificationError):
        verify_webhook_jwt(
            token, keys=ring.public_keys(), audience=URL, body=BODY, now=now
        )


def test_other_kinds_of_token_are_never_webhook_jwts(ring):
    """A link or access token, or a JWT of another key, is refused."""
    from actionlinks.tokens import Purpose, TokenIssuer

    issuer = TokenIssuer(
        ring, issuer="https://links.example.test", clock=FrozenClock(NOW)
    )
    purpose = Purpose(name="invite", ttl=timedelta(days=1), max_ttl=timedelta(days=1))
    link = issuer.mint(purpose, subject="u", algorithm="EdDSA").token
    other_ring = KeyRing.generate(created_at=NOW)
    for token in (link, jwt_for(other_ring), "a.b.c", "x" * 5000):
        with pytest.raises(WebhookVerificationError):
            verify_webhook_jwt(
                token, keys=ring.public_keys(), audience=URL, body=BODY, now=NOW
            )


def test_the_verifier_takes_the_jwt_from_the_authorization_header(ring):
    """JWT only: Bearer in Authorization, webhook-id must agree with jti."""
    ours = verifier(jwks=ring.jwks(), audience=URL, issuer="https://links.example.test")
    headers = {"Authorization": f"Bearer {jwt_for(ring)}", "webhook-id": "msg_1"}
    received = ours.verify(headers, BODY)
    assert (received.scheme, received.message_id) == ("jwt", "msg_1")
    with pytest.raises(WebhookVerificationError):
        ours.verify({**headers, "webhook-id": "msg_2"}, BODY)
    with pytest.raises(WebhookVerificationError) as caught:
        ours.verify({}, BODY)
    assert caught.value.reason == "missing_headers"
    custom = verifier(
        jwks=PublicKeySet.from_jwks(ring.jwks()),
        audience=URL,
        jwt_header="X-Webhook-JWT",
    )
    assert custom.verify({"x-webhook-jwt": jwt_for(ring)}, BODY).scheme == "jwt"


def test_a_failing_hmac_does_not_hide_a_valid_jwt(ring):
    """Any one scheme vouching is enough: a wrong v1 entry plus a good JWT passes."""
    secret = generate_secret()
    headers = headers_for([generate_secret()])
    headers["authorization"] = f"Bearer {jwt_for(ring)}"
    both = verifier(secrets=secret, jwks=ring.jwks(), audience=URL)
    assert both.verify(headers, BODY).scheme == "jwt"


# --- the edges of each scheme's input ------------------------------------------------


@pytest.mark.parametrize(
    "jwk",
    [
        {"alg": "EdDSA"},
        {"kid": "k", "alg": "EdDSA", "kty": "OKP", "crv": "Ed25519", "x": "!!"},
        {"kid": "k", "alg": "ES256", "kty": "OKP", "crv": "Ed25519", "x": "A" * 43},
    ],
)
def test_malformed_public_keys_are_configuration_errors(jwk):
    """A JWK Set entry that is not a usable EdDSA/ES256 key is refused."""
    with pytest.raises(ConfigurationError):
        PublicKeySet.from_jwks({"keys": [jwk]})


def test_a_jwk_set_keeps_only_keys_it_can_verify_with(ring):
    """Entries of other algorithms are skipped; the rest are found by kid."""
    document = {"keys": [*ring.jwks()["keys"], {"kty": "RSA", "alg": "RS256"}]}
    keys = PublicKeySet.from_jwks(document)
    assert len(keys) == 2
    assert keys.get(ring.signing_key("EdDSA").key_id).algorithm == "EdDSA"
    assert repr(keys) == "PublicKeySet(keys=2)"
    with pytest.raises(ConfigurationError):
        PublicKeySet.from_jwks([])


@pytest.mark.parametrize(
    "payload_change",
    [
        {"extra": 1},
        {"aud": 7},
        {"iat": "now"},
        {"exp": None},
        {"exp": 10**30},
    ],
)
def test_jwts_with_odd_claims_are_refused(ring, payload_change):
    """Claims outside the token's shape are malformed, even when signed."""
    from support import forge

    key = ring.signing_key("EdDSA")
    payload = {
        "iss": "https://links.example.test",
        "aud": URL,
        "jti": "msg_1",
        "iat": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 60,
        "body_sha256": "x",
        **payload_change,
    }
    if payload_change.get("exp", 0) is None:
        del payload["exp"]
    token = forge(
        {"alg": "EdDSA", "kid": key.key_id, "typ": "al-webhook+jwt"}, payload, key
    )
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook_jwt(
            token, keys=ring.public_keys(), audience=URL, body=BODY, now=NOW
        )
    assert caught.value.reason == "malformed"


def test_a_jwt_from_another_issuer_or_too_long_is_refused(ring):
    """iss checked when known; a lifetime over 5 minutes is refused."""
    from support import forge

    token = jwt_for(ring)
    with pytest.raises(WebhookVerificationError):
        verify_webhook_jwt(
            token,
            keys=ring.public_keys(),
            audience=URL,
            body=BODY,
            now=NOW,
            issuer="https://elsewhere.test",
        )
    key = ring.signing_key("EdDSA")
    from actionlinks.webhooks.jwt import body_digest

    long_lived = forge(
        {"alg": "EdDSA", "kid": key.key_id, "typ": "al-webhook+jwt"},
        {
            "iss": "i",
            "aud": URL,
            "jti": "m",
            "iat": int(NOW.timestamp()),
            "exp": int(NOW.timestamp()) + 3600,
            "body_sha256": body_digest(BODY),
        },
        key,
    )
    with pytest.raises(WebhookVerificationError):
        verify_webhook_jwt(
            long_lived, keys=ring.public_keys(), audience=URL, body=BODY, now=NOW
        )


@pytest.mark.parametrize("text", ["whpk_AAAA", "whsk_AAAA", "nope", "whpk_!!!"])
def test_malformed_v1a_keys_are_configuration_errors(text):
    """Ed25519 key strings must carry their prefix and 32 bytes."""
    from actionlinks.webhooks.signing import public_key

    with pytest.raises(ConfigurationError):
        public_key(text) if text.startswith(("whpk", "nope")) else private_key(text)


def test_a_v1_signature_must_be_padded_base64_as_the_reference_reads_it():
    """Like standardwebhooks, an entry without its base64 padding does not match."""
    secret = generate_secret()
    headers = headers_for([secret])
    headers["webhook-signature"] = headers["webhook-signature"].rstrip("=")
    with pytest.raises(WebhookVerificationError):
        verifier(secrets=secret).verify(headers, BODY)
    padded = headers_for([secret])
    assert verifier(secrets=secret).verify(padded, BODY)


def test_headers_are_found_whatever_their_case():
    """Plain dicts with any capitalisation work like Starlette's headers."""
    secret = generate_secret()
    headers = {k.title(): v for k, v in headers_for([secret]).items()}
    assert verifier(secrets=secret).verify(headers, BODY).message_id == "msg_1"


def test_a_header_full_of_v1a_entries_costs_a_few_checks():
    """Audit: at most a handful of Ed25519 checks per message, duplicates once."""
    from actionlinks.webhooks.receiving import MAX_V1A_ENTRIES

    _, public = generate_signing_key()
    other_private, _ = generate_signing_key()
    entries = [
        sign_v1a(
            private_key(other_private),
            message_id="msg_1",
            timestamp=int(NOW.timestamp()),
            body=body,
        )
        for body in (b"a", b"b", b"c", b"d", b"e", b"f")
    ]
    headers = headers_for([])
    headers["webhook-signature"] = " ".join(entries * 10)
    ours = verifier(public_keys=public)
    calls = []

    class Counting:
        def __init__(self, key):
            self.key = key

        def verify(self, signature, content):
            calls.append(1)
            return self.key.verify(signature, content)

    ours._public_keys = [Counting(k) for k in ours._public_keys]
    with pytest.raises(WebhookVerificationError):
        ours.verify(headers, BODY)
    assert len(calls) == MAX_V1A_ENTRIES


def test_a_message_id_that_is_not_text_is_malformed():
    """Audit: a lone surrogate in webhook-id is refused, not a UnicodeEncodeError."""
    secret = generate_secret()
    headers = {**headers_for([secret]), "webhook-id": "msg_\udcff"}
    with pytest.raises(WebhookVerificationError) as caught:
        verifier(secrets=secret).verify(headers, BODY)
    assert caught.value.reason == "malformed"
