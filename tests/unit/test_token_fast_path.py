"""The verify fast path and its parts agree with the strict path they shortcut."""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import forge, unb64

from actionlinks.claims import ActionClaims
from actionlinks.clock import SystemClock
from actionlinks.errors import InvalidArgumentError, MalformedTokenError, TokenError
from actionlinks.jws import compact_json, decode_segment, json_object, segment_object
from actionlinks.mac import PrefixedMac
from actionlinks.testing import FrozenClock
from actionlinks.tokens import Purpose, TokenIssuer, TokenKind

ISSUER = "https://links.example.test"
RESET = Purpose(
    name="password-reset", ttl=timedelta(minutes=30), max_ttl=timedelta(hours=2)
)
BOUND = Purpose(
    name="email-change",
    ttl=timedelta(minutes=30),
    max_ttl=timedelta(hours=2),
    binds_state=True,
)
API = Purpose(
    name="password-reset",
    ttl=timedelta(minutes=30),
    max_ttl=timedelta(hours=2),
    kind=TokenKind.ACCESS,
)
ACTIONS = {"password-reset": RESET, "email-change": BOUND}


def _outcome(issuer: TokenIssuer, token: str, purpose: Any, state: Any) -> object:
    try:
        return ("ok", issuer.verify(token, purpose, state=state))
    except TokenError as exc:
        return ("rejected", type(exc), str(exc))


def _strict_only(issuer: TokenIssuer) -> TokenIssuer:
    strict = TokenIssuer(issuer.keys, issuer=issuer.issuer, clock=issuer._clock)
    strict._ring = dataclasses.replace(strict._ring, headers={})
    return strict


# --- the parts -------------------------------------------------------------------


@settings(max_examples=300)
@given(
    secret=st.binary(min_size=32, max_size=200),
    prefix=st.binary(max_size=130),
    message=st.binary(max_size=300),
)
def test_prefixed_mac_is_hmac_sha256_of_prefix_and_message(secret, prefix, message):
    """The hand-assembled RFC 2104 MAC equals the stdlib's, long keys included."""
    expected = hmac.digest(secret, prefix + message, "sha256")
    assert PrefixedMac(secret, prefix).digest(message) == expected
    assert "secret" not in repr(PrefixedMac(secret, prefix))


def _strict_object(segment: str) -> dict[str, Any] | None:
    try:
        return json_object(decode_segment(segment), "payload")
    except (MalformedTokenError, ValueError):
        return None


_JSON_TEXT = st.sampled_from(
    [
        '{"a":1}',
        '{"a":1,"a":2}',
        '{"a":{"b":1,"b":2}}',
        ' {"a":1}',
        '{"a":1} ',
        '{"a":NaN}',
        '{"a":Infinity}',
        "[1,2]",
        '"text"',
        '{"a":"\\ud800"}',
        '{"a":"\x01"}',
        '{"a":1}{"b":2}',
        "{}",
        '{"a":[{"b":1}],"c":"d"}',
    ]
) | st.builds(
    json.dumps, st.dictionaries(st.text(max_size=4), st.integers() | st.text())
)


@settings(max_examples=400)
@given(
    text=_JSON_TEXT,
    raw=st.binary(max_size=40),
    use_raw=st.booleans(),
    suffix=st.sampled_from(["", "A", "B", "=", "==", "+", "/", ".", " ", "\n"]),
)
def test_segment_object_accepts_exactly_what_the_strict_decoders_accept(
    text, raw, use_raw, suffix
):
    """Canonical base64url of strict JSON objects, and nothing else, in both."""
    data = raw if use_raw else text.encode("utf-8", "surrogatepass")
    segment = base64.urlsafe_b64encode(data).rstrip(b"=").decode() + suffix
    strict = _strict_object(segment)
    quick = segment_object(segment.encode())
    if quick is not None:
        assert quick == strict
    elif strict is not None:
        # The quick form refuses only whitespace around the object.
        assert data.decode() != data.decode().strip()


@settings(max_examples=300)
@given(
    value=st.dictionaries(
        st.text(max_size=6),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=4), inner, max_size=3)
            ),
            max_leaves=8,
        ),
        max_size=6,
    )
)
def test_compact_json_is_json_dumps_with_compact_separators(value):
    """The prebuilt encoder writes the bytes json.dumps writes."""
    assert compact_json(value) == json.dumps(value, separators=(",", ":"))


# --- whole tokens ----------------------------------------------------------------

_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [
            "",
            "user:42",
            "password-reset",
            "email-change",
            ISSUER,
            "a b",
            "é",
            "\ud800",
            "x" * 300,
            "read write",
        ]
    )
    | st.lists(st.integers(), max_size=2)
    | st.dictionaries(st.sampled_from(["k", "v"]), st.integers(), max_size=2)
)
_NAMES = st.sampled_from(
    ["iss", "sub", "pur", "jti", "iat", "ius", "exp", "dat", "sfp", "scope", "aud"]
)


@settings(max_examples=600, deadline=None)
@given(
    changes=st.dictionaries(_NAMES, _VALUES | st.just(...), max_size=3),
    lifetime=st.sampled_from([1, 1799, 7200, 7201, 0, -5]),
    moment=st.sampled_from([-31, -30, 0, 1, 1829, 1830, 1831, 7300]),
    purpose=st.sampled_from([RESET, BOUND, API, ACTIONS]),
    state=st.sampled_from([None, "v1", "v2"]),
    duplicate=st.sampled_from([None, "sub", "exp", "iss"]),
    algorithm=st.sampled_from(["HS256", "EdDSA"]),
)
def test_signed_payloads_of_any_shape_get_one_outcome_on_both_paths(
    ring, changes, lifetime, moment, purpose, state, duplicate, algorithm
):
    """Differential over correctly signed payloads in our exact header.

    Claim values of every type, missing and unknown claims, lifetimes over the
    maximum, duplicate keys, and clocks on every side of the leeway: the fast
    path accepts or rejects exactly as the strict path does, with the same
    claims or the same error.
    """
    start = ring.keys[0].created_at
    clock = FrozenClock(start)
    issuer = TokenIssuer(ring, issuer=ISSUER, clock=clock)
    minted = issuer.mint(
        BOUND if purpose is BOUND else (API if purpose is API else RESET),
        subject="user:42",
        state="v1",
        algorithm=algorithm,
        data={"list": 7},
    ).token
    header_segment = minted.split(".")[0]
    payload: dict[str, Any] = json.loads(unb64(minted.split(".")[1]))
    payload["exp"] = payload["iat"] + lifetime
    for name, value in changes.items():
        if value is ...:
            payload.pop(name, None)
        else:
            payload[name] = value
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False)
    if duplicate is not None and duplicate in payload:
        text = text[:-1] + f',"{duplicate}":{json.dumps(payload[duplicate])}}}'
    token = forge(
        unb64(header_segment),
        text.encode("utf-8", "surrogatepass"),
        ring.get(json.loads(unb64(header_segment))["kid"]),
    )
    clock.advance(timedelta(seconds=moment))
    assert _outcome(issuer, token, purpose, state) == _outcome(
        _strict_only(issuer), token, purpose, state
    )


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (timedelta(seconds=-30), True),
        (timedelta(seconds=-30, microseconds=-1), False),
        (timedelta(seconds=1829, microseconds=999_999), True),
        (timedelta(seconds=1830), False),
    ],
)
def test_both_paths_draw_the_leeway_lines_to_the_microsecond(ring, offset, accepted):
    """30 s before iat is valid, 1 µs earlier is not; exp + 30 s is expired."""
    start = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
    clock = FrozenClock(start)
    issuer = TokenIssuer(ring, issuer=ISSUER, clock=clock)
    token = issuer.mint(RESET, subject="user:42").token
    clock.advance(offset)
    fast = _outcome(issuer, token, RESET, None)
    assert fast == _outcome(_strict_only(issuer), token, RESET, None)
    assert (fast[0] == "ok") is accepted


def test_claims_are_read_only_and_compare_by_value(issuer):
    """Claims cannot be changed; equal claims are equal, hash alike and read back."""
    minted = issuer.mint(RESET, subject="user:42", data={"list": 7})
    verified = issuer.verify(minted.token, RESET)
    assert verified == minted.claims
    assert hash(verified) == hash(minted.claims)
    assert verified != issuer.mint(RESET, subject="user:42").claims
    with pytest.raises(AttributeError):
        verified.subject = "user:1"  # type: ignore[misc]
    rebuilt = ActionClaims(
        action=verified.action,
        subject=verified.subject,
        token_id=verified.token_id,
        issued_at=verified.issued_at,
        expires_at=verified.expires_at,
        issuer=verified.issuer,
        key_id=verified.key_id,
        algorithm=verified.algorithm,
        data=verified.data,
    )
    assert rebuilt == verified
    assert verified.token_id in repr(verified)
    assert minted.token not in repr(verified)


def test_claims_keep_the_issue_instant_to_the_microsecond(ring):
    """A revocation at .3 s must tell links of .2 s from links of .7 s."""
    start = datetime(2026, 12, 2, 12, 0, 0, 234_567, tzinfo=UTC)
    issuer = TokenIssuer(ring, issuer=ISSUER, clock=FrozenClock(start))
    minted = issuer.mint(RESET, subject="user:42")
    assert minted.claims.issued_at == start
    assert issuer.verify(minted.token, RESET).issued_at == start
    assert minted.claims.expires_at == start.replace(microsecond=0) + RESET.ttl


def test_a_lifetime_under_one_second_is_refused(issuer):
    """A ttl that would round to zero seconds is an error, not a dead token."""
    with pytest.raises(InvalidArgumentError) as caught:
        issuer.mint(RESET, subject="user:42", ttl=timedelta(milliseconds=500))
    assert caught.value.field == "ttl"


def test_clocks_tell_whole_microseconds_since_the_epoch():
    """FrozenClock is exact; the system clock agrees with its own now()."""
    start = datetime(2026, 12, 2, 12, 0, 0, 1, tzinfo=UTC)
    assert FrozenClock(start).micros() == int(start.timestamp()) * 10**6 + 1
    system = SystemClock()
    before = system.now()
    micros = system.micros()
    after = system.now()
    assert int(before.timestamp() * 10**6) - 1 <= micros
    assert micros <= int(after.timestamp() * 10**6) + 1


def test_a_state_tag_that_is_not_ascii_is_malformed_on_both_paths(ring, clock):
    """Found by an audit: a lone surrogate in ``sfp`` escaped as UnicodeEncodeError.

    Only a key holder could sign one; it is a malformed token all the same.
    """
    from actionlinks.errors import MalformedTokenError

    issuer = TokenIssuer(ring, issuer=ISSUER, clock=clock)
    minted = issuer.mint(BOUND, subject="user:42", state="v1").token
    header, body, _ = minted.split(".")
    payload = json.loads(unb64(body))
    payload["sfp"] = "\ud800"
    token = forge(
        unb64(header),
        json.dumps(payload).encode(),
        ring.get(json.loads(unb64(header))["kid"]),
    )
    for verifier in (issuer, _strict_only(issuer)):
        with pytest.raises(MalformedTokenError):
            verifier.verify(token, BOUND, state="v1")
