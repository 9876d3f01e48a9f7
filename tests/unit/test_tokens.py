"""Minting and strict verification of tokens (actionlinks.tokens)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from support import b64, forge, parts, unb64

from actionlinks.errors import (
    ConfigurationError,
    InvalidSignatureError,
    MalformedTokenError,
    StateChangedError,
    TokenError,
    TokenExpiredError,
    TokenNotYetValidError,
    WrongPurposeError,
)
from actionlinks.keys import ALGORITHMS, SigningKey
from actionlinks.testing import FrozenClock
from actionlinks.tokens import MAX_TOKEN_LENGTH, Purpose, TokenIssuer, TokenKind

RESET = Purpose(
    name="password-reset",
    ttl=timedelta(minutes=30),
    max_ttl=timedelta(hours=2),
)
CONFIRM = Purpose(
    name="email-confirm", ttl=timedelta(hours=24), max_ttl=timedelta(days=7)
)
API = Purpose(
    name="password-reset",
    ttl=timedelta(minutes=30),
    max_ttl=timedelta(hours=2),
    kind=TokenKind.ACCESS,
)


def _signed(
    issuer: TokenIssuer, **changes: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload = parts(issuer.mint(RESET, subject="user:42").token)
    for name, value in changes.items():
        if value is ...:
            payload.pop(name)
        else:
            payload[name] = value
    return header, payload


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_minted_token_verifies_with_each_algorithm(issuer, algorithm):
    """A token minted with each algorithm verifies and returns its claims."""
    minted = issuer.mint(
        RESET, subject="user:42", data={"next": "/home"}, algorithm=algorithm
    )
    claims = issuer.verify(minted.token, RESET)
    assert claims == minted.claims
    assert claims.subject == "user:42"
    assert claims.action == "password-reset"
    assert claims.algorithm == algorithm
    assert claims.data == {"next": "/home"}
    assert claims.expires_at - claims.issued_at == timedelta(minutes=30)
    assert len(unb64(claims.token_id)) >= 16


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
def test_asymmetric_tokens_verify_with_plain_pyjwt_from_the_jwks(
    issuer, ring, algorithm
):
    """Any party verifies EdDSA/ES256 tokens with stock PyJWT and the public JWKS."""
    token = issuer.mint(RESET, subject="user:42", algorithm=algorithm).token
    jwks = jwt.PyJWKSet.from_json(json.dumps(ring.jwks()))
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    claims = jwt.decode(
        token,
        key=key,
        algorithms=[algorithm],
        issuer="https://links.example.test",
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["sub"] == "user:42"
    assert claims["pur"] == "password-reset"


def test_hs256_token_is_byte_identical_to_pyjwt(issuer, ring):
    """The HS256 encoding matches PyJWT's for the same header and claims."""
    token = issuer.mint(RESET, subject="user:42", data={"a": [1, "b"]}).token
    header, payload = parts(token)
    secret = unb64(ring.signing_key("HS256").to_private_jwk()["k"])
    assert jwt.encode(payload, secret, algorithm="HS256", headers=header) == token


def test_pyjwt_tokens_of_the_same_shape_verify(issuer, ring):
    """Differential: a token PyJWT encodes with our header and claims is accepted."""
    header, payload = parts(issuer.mint(RESET, subject="someone").token)
    payload["sub"] = "user:7"
    secret = unb64(ring.signing_key("HS256").to_private_jwk()["k"])
    token = jwt.encode(payload, secret, algorithm="HS256", headers=header)
    assert issuer.verify(token, RESET).subject == "user:7"


def test_token_verifies_as_bytes(issuer):
    """A token given as ASCII bytes verifies like the text."""
    token = issuer.mint(RESET, subject="user:42").token
    assert issuer.verify(token.encode(), RESET).subject == "user:42"


def test_verify_looks_up_the_action_among_several(issuer):
    """Given a mapping of purposes, the token's own action selects one."""
    token = issuer.mint(CONFIRM, subject="a@example.test").token
    claims = issuer.verify(token, {"password-reset": RESET, "email-confirm": CONFIRM})
    assert claims.action == "email-confirm"


def test_token_for_an_undeclared_action_is_rejected(issuer):
    """A token whose action is not among the purposes is of the wrong purpose."""
    token = issuer.mint(CONFIRM, subject="a@example.test").token
    with pytest.raises(WrongPurposeError):
        issuer.verify(token, {"password-reset": RESET})


# --- the rejection table of the foundation issue ------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_alg_none_in_any_casing_is_rejected(issuer, alg):
    """alg=none, however it is spelt, is never accepted."""
    header, payload = _signed(issuer)
    header["alg"] = alg
    with pytest.raises(InvalidSignatureError):
        issuer.verify(forge(header, payload, None), RESET)


@pytest.mark.parametrize("algorithm", ["EdDSA", "ES256"])
@pytest.mark.parametrize("encoding", ["pem", "der", "raw-jwk"])
def test_hs256_signed_with_the_public_key_is_rejected(
    issuer, ring, algorithm, encoding
):
    """HS/asymmetric confusion: HMAC keyed with the public key never verifies."""
    public = ring.signing_key(algorithm)._public
    if encoding == "pem":
        secret = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    elif encoding == "der":
        secret = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        secret = json.dumps(ring.signing_key(algorithm).to_public_jwk()).encode()
    secret = secret.ljust(32, b"\0")
    header, payload = _signed(issuer)
    header.update(alg="HS256", kid=ring.signing_key(algorithm).key_id)
    attacker = SigningKey.from_secret(secret, key_id="x", created_at=issuer_now(issuer))
    with pytest.raises(InvalidSignatureError):
        issuer.verify(forge(header, payload, attacker), RESET)


def issuer_now(issuer: TokenIssuer):
    return issuer._clock.now()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_signature_from_another_key_is_rejected(issuer, ring, algorithm):
    """A token signed by a different key under the same kid does not verify."""
    genuine = ring.signing_key(algorithm)
    other = SigningKey.generate(
        algorithm, created_at=issuer_now(issuer), key_id=genuine.key_id
    )
    header, payload = parts(issuer.mint(RESET, subject="u", algorithm=algorithm).token)
    with pytest.raises(InvalidSignatureError):
        issuer.verify(forge(header, payload, other), RESET)


def test_tampered_payload_is_rejected(issuer):
    """Changing one claim without re-signing breaks the signature."""
    token = issuer.mint(RESET, subject="user:42").token
    header_segment, _, signature = token.split(".")
    _, payload = parts(token)
    payload["sub"] = "user:1"
    forged = f"{header_segment}.{b64(json.dumps(payload).encode())}.{signature}"
    with pytest.raises(InvalidSignatureError):
        issuer.verify(forged, RESET)


@pytest.mark.parametrize("kid", ["no-such-key", None, 7, ""])
def test_unknown_or_missing_kid_is_rejected(issuer, ring, kid):
    """A kid that selects no key (or is absent or not a string) is rejected."""
    header, payload = _signed(issuer)
    if kid is None:
        del header["kid"]
    else:
        header["kid"] = kid
    with pytest.raises(InvalidSignatureError):
        issuer.verify(forge(header, payload, ring.signing_key("HS256")), RESET)


@pytest.mark.parametrize("typ", ["al-access+jwt", "JWT", None, "AL-LINK+JWT"])
def test_token_of_another_kind_is_rejected(issuer, ring, typ):
    """A token whose typ is another kind's (or missing) is of the wrong purpose."""
    header, payload = _signed(issuer)
    if typ is None:
        del header["typ"]
    else:
        header["typ"] = typ
    with pytest.raises(WrongPurposeError):
        issuer.verify(forge(header, payload, ring.signing_key("HS256")), RESET)


def test_link_token_is_not_accepted_as_an_access_token(issuer):
    """Kinds are separate even for the same purpose name."""
    with pytest.raises(WrongPurposeError):
        issuer.verify(issuer.mint(RESET, subject="u").token, API)
    with pytest.raises(WrongPurposeError):
        issuer.verify(issuer.mint(API, subject="u").token, RESET)


def test_token_for_another_action_is_rejected(issuer):
    """A password-reset token never confirms an e-mail."""
    token = issuer.mint(RESET, subject="user:42").token
    with pytest.raises(WrongPurposeError):
        issuer.verify(token, CONFIRM)


def test_token_from_another_issuer_is_rejected(ring, clock):
    """The iss claim must be this issuer's."""
    other = TokenIssuer(ring, issuer="https://elsewhere.test", clock=clock)
    token = other.mint(RESET, subject="u").token
    with pytest.raises(WrongPurposeError):
        TokenIssuer(ring, issuer="https://links.example.test", clock=clock).verify(
            token, RESET
        )


def test_expired_token_is_rejected_beyond_the_leeway(issuer, clock):
    """Within the leeway after exp the token passes; beyond it, it is expired."""
    minted = issuer.mint(RESET, subject="user:42")
    clock.advance(timedelta(minutes=30, seconds=29))
    assert issuer.verify(minted.token, RESET).subject == "user:42"
    clock.advance(timedelta(seconds=1))
    with pytest.raises(TokenExpiredError) as caught:
        issuer.verify(minted.token, RESET)
    assert caught.value.expired_at == minted.claims.expires_at


def test_token_from_the_future_is_rejected_beyond_the_leeway(issuer, clock):
    """A token issued later than now plus leeway is not valid yet."""
    minted = issuer.mint(RESET, subject="user:42")
    clock.advance(timedelta(seconds=-30))
    assert issuer.verify(minted.token, RESET)
    clock.advance(timedelta(seconds=-1))
    with pytest.raises(TokenNotYetValidError) as caught:
        issuer.verify(minted.token, RESET)
    assert caught.value.not_before == minted.claims.issued_at - timedelta(seconds=30)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("exp", ...),
        ("exp", "1900000000"),
        ("exp", 1900000000.0),
        ("exp", True),
        ("exp", None),
        ("exp", -1),
        ("exp", 10**30),
        ("iat", ...),
        ("iat", 1.5),
        ("iat", False),
        ("sub", ...),
        ("sub", 42),
        ("sub", ""),
        ("jti", ...),
        ("jti", ["a"]),
        ("pur", ...),
        ("dat", "text"),
        ("sfp", 1),
        ("aud", "someone"),
    ],
)
def test_claims_of_the_wrong_type_or_missing_are_rejected(issuer, ring, name, value):
    """Required claims, integer NumericDates and known claim names only."""
    header, payload = _signed(issuer, **{name: value})
    with pytest.raises(MalformedTokenError):
        issuer.verify(forge(header, payload, ring.signing_key("HS256")), RESET)


def test_lifetime_beyond_the_actions_maximum_is_rejected(issuer, ring):
    """exp - iat may not exceed the purpose's max TTL, even when signed."""
    header, payload = _signed(issuer)
    payload["exp"] = payload["iat"] + 2 * 3600 + 1
    with pytest.raises(MalformedTokenError):
        issuer.verify(forge(header, payload, ring.signing_key("HS256")), RESET)
    payload["exp"] = payload["iat"] + 2 * 3600
    assert issuer.verify(forge(header, payload, ring.signing_key("HS256")), RESET)


def test_exp_before_iat_is_rejected(issuer, ring):
    """A token that expires before it was issued is malformed."""
    header, payload = _signed(issuer)
    payload["exp"] = payload["iat"]
    with pytest.raises(MalformedTokenError):
        issuer.verify(forge(header, payload, ring.signing_key("HS256")), RESET)


@pytest.mark.parametrize("index", [0, 1, 2])
@pytest.mark.parametrize("change", ["pad", "plus", "slash", "space", "dot"])
def test_non_canonical_base64url_in_any_segment_is_rejected(issuer, index, change):
    """'=' padding, '+', '/' and stray characters make a segment invalid."""
    segments = issuer.mint(RESET, subject="user:42").token.split(".")
    if change == "pad":
        segments[index] += "=" * (4 - len(segments[index]) % 4 or 4)
    else:
        char = {"plus": "+", "slash": "/", "space": " ", "dot": "."}[change]
        segments[index] = segments[index][:5] + char + segments[index][6:]
    with pytest.raises(MalformedTokenError):
        issuer.verify(".".join(segments), RESET)


def test_non_canonical_trailing_bits_are_rejected(issuer):
    """A signature whose unused trailing bits are set decodes but is refused."""
    token = issuer.mint(RESET, subject="user:42").token
    head, body, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    forged = f"{head}.{body}.{signature[:-1]}{alphabet[last ^ 1]}"
    assert unb64(forged.split(".")[2]) == unb64(signature)
    with pytest.raises(MalformedTokenError):
        issuer.verify(forged, RESET)


@pytest.mark.parametrize("where", ["header", "payload"])
def test_duplicate_json_keys_are_rejected(issuer, ring, where):
    """Duplicate keys are ambiguous between parsers; they are refused even if signed."""
    header, payload = _signed(issuer)
    if where == "header":
        raw_header = json.dumps(header)[:-1].encode() + b', "kid": "other"}'
        token = forge(raw_header, payload, ring.signing_key("HS256"))
    else:
        raw_payload = json.dumps(payload)[:-1].encode() + b', "sub": "admin"}'
        token = forge(header, raw_payload, ring.signing_key("HS256"))
    with pytest.raises(MalformedTokenError):
        issuer.verify(token, RESET)


def test_ten_megabyte_token_is_rejected_before_decoding(issuer):
    """The size cap applies first: nothing of a 10 MB input is decoded."""
    header, payload, signature = issuer.mint(RESET, subject="u").token.split(".")
    huge = f"{header}.{payload}{'A' * (10 * 1024 * 1024)}.{signature}"
    with pytest.raises(MalformedTokenError, match=f"longer than {MAX_TOKEN_LENGTH}"):
        issuer.verify(huge, RESET)
    with pytest.raises(MalformedTokenError, match="longer than"):
        issuer.verify(huge.encode(), RESET)


def test_non_utf8_input_is_rejected(issuer, ring):
    """Non-ASCII bytes as the token, and non-UTF-8 JSON inside it, are refused."""
    with pytest.raises(MalformedTokenError):
        issuer.verify(b"\xff\xfe.\x80.\xc3", RESET)
    header, payload = _signed(issuer)
    raw = json.dumps(payload)[:-1].encode() + b', "x": "\xff"}'
    with pytest.raises(MalformedTokenError):
        issuer.verify(forge(header, raw, ring.signing_key("HS256")), RESET)


@pytest.mark.parametrize("payload", [[1, 2], "text", 7, None, b"[]", b"", b"{"])
def test_payload_that_is_not_a_json_object_is_rejected(issuer, ring, payload):
    """JSON arrays, scalars, empty and broken payloads are refused even if signed."""
    header, _ = _signed(issuer)
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(MalformedTokenError):
        issuer.verify(forge(header, raw, ring.signing_key("HS256")), RESET)


def test_nan_and_infinity_constants_are_rejected(issuer, ring):
    """Python's non-standard JSON constants never parse."""
    header, payload = _signed(issuer)
    raw = json.dumps(payload)[:-1].encode() + b', "dat": {"x": NaN}}'
    with pytest.raises(MalformedTokenError):
        issuer.verify(forge(header, raw, ring.signing_key("HS256")), RESET)


@pytest.mark.parametrize("crit", [["exp"], ["b64"], ["x-unknown"], [], "exp"])
def test_crit_header_is_rejected(issuer, ring, crit):
    """Critical extensions are not supported, so crit is refused outright."""
    header, payload = _signed(issuer)
    header["crit"] = crit
    header["x-unknown"] = True
    with pytest.raises(MalformedTokenError):
        issuer.verify(forge(header, payload, ring.signing_key("HS256")), RESET)


@pytest.mark.parametrize("parameter", ["jwk", "jku", "x5u", "x5c"])
def test_embedded_or_remote_key_headers_are_never_trusted(issuer, parameter):
    """A token carrying the attacker's own key (or a URL to one) is rejected."""
    attacker = Ed25519PrivateKey.generate()
    key = SigningKey(
        "evil", algorithm="EdDSA", private=attacker, created_at=issuer_now(issuer)
    )
    header, payload = _signed(issuer)
    header.update(alg="EdDSA", kid="evil")
    header[parameter] = (
        key.to_public_jwk() if parameter == "jwk" else "https://evil.test/jwks.json"
    )
    with pytest.raises(InvalidSignatureError):
        issuer.verify(forge(header, payload, key), RESET)


def test_unexpected_header_parameters_are_rejected(issuer, ring):
    """Only alg, kid and typ appear in our headers."""
    header, payload = _signed(issuer)
    header["cty"] = "JWT"
    with pytest.raises(MalformedTokenError):
        issuer.verify(forge(header, payload, ring.signing_key("HS256")), RESET)


@pytest.mark.parametrize(
    "token",
    ["", ".", "..", "a.b", "a.b.c.d", "a.b.c", "e30.e30.", "e30.e30.e30.e30"],
)
def test_structurally_broken_tokens_are_rejected(issuer, token):
    """Anything but three canonical segments is malformed."""
    with pytest.raises(TokenError):
        issuer.verify(token, RESET)


def test_non_text_input_is_rejected(issuer):
    """Objects other than str and bytes are malformed input, not a TypeError."""
    with pytest.raises(MalformedTokenError):
        issuer.verify(12345, RESET)  # type: ignore[arg-type]


# --- state binding --------------------------------------------------------------


def test_state_bound_token_dies_when_the_fingerprint_changes(issuer):
    """A reset link bound to the password hash dies once the password changes."""
    token = issuer.mint(RESET, subject="user:42", state="pbkdf2$old-hash").token
    assert issuer.verify(token, RESET, state="pbkdf2$old-hash").is_state_bound
    with pytest.raises(StateChangedError):
        issuer.verify(token, RESET, state="pbkdf2$new-hash")
    with pytest.raises(StateChangedError):
        issuer.verify(token, RESET)
    assert issuer.verify(token, RESET, ignore_state=True).subject == "user:42"


def test_state_fingerprint_is_not_readable_from_the_token(issuer):
    """Only a keyed tag of the state travels; the state itself never does."""
    token = issuer.mint(RESET, subject="user:42", state="secret-state-value").token
    _, payload = parts(token)
    assert "secret-state-value" not in json.dumps(payload)
    assert len(unb64(payload["sfp"])) == 16


def test_purpose_that_binds_state_refuses_unbound_tokens(issuer):
    """If the purpose requires state binding, a token without it is refused."""
    bound = Purpose(
        name="password-reset",
        ttl=timedelta(minutes=30),
        max_ttl=timedelta(hours=2),
        binds_state=True,
    )
    token = issuer.mint(RESET, subject="user:42").token
    with pytest.raises(StateChangedError):
        issuer.verify(token, bound, state="x")
    with pytest.raises(ConfigurationError):
        issuer.mint(bound, subject="user:42")


# --- minting arguments ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": ""},
        {"subject": "x" * 257},
        {"subject": "u", "ttl": timedelta(hours=3)},
        {"subject": "u", "ttl": timedelta(0)},
        {"subject": "u", "data": {"big": "x" * 2000}},
        {"subject": "u", "data": {"f": float("nan")}},
        {"subject": "u", "data": {"o": object()}},
    ],
)
def test_bad_mint_arguments_raise_configuration_errors(issuer, kwargs):
    """Invalid subjects, lifetimes and data are refused when minting."""
    with pytest.raises(ConfigurationError):
        issuer.mint(RESET, **kwargs)


@pytest.mark.parametrize("name", ["Password", "a_b", "-x", "x-", "a--b", "", "x" * 65])
def test_action_names_must_be_kebab_case(name):
    """Purpose names are validated when declared."""
    with pytest.raises(ConfigurationError):
        Purpose(name=name, ttl=timedelta(minutes=1), max_ttl=timedelta(minutes=1))


def test_reprs_never_show_the_token(issuer):
    """MintedToken's repr shows claims, not the token."""
    minted = issuer.mint(RESET, subject="user:42")
    assert minted.token not in repr(minted)
    assert minted.token.split(".")[2] not in repr(minted)


def test_error_messages_never_contain_the_token(issuer, clock):
    """Rejection messages describe the failed check, never echo the input."""
    token = issuer.mint(RESET, subject="user:42").token
    clock.advance(timedelta(days=1))
    with pytest.raises(TokenExpiredError) as caught:
        issuer.verify(token, RESET)
    for piece in token.split("."):
        assert piece not in str(caught.value)
        assert piece not in repr(caught.value)


# --- property: nothing escapes the tree -------------------------------------------

_JWS_ALPHABET = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \xff"
)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_no_byte_string_raises_outside_the_tree(ring, raw):
    """verify() on any bytes raises a TokenError (or, impossibly, succeeds)."""
    issuer = TokenIssuer(ring, issuer="https://links.example.test")
    with pytest.raises(TokenError):
        issuer.verify(raw, RESET)


@settings(max_examples=400, deadline=None)
@given(st.text(_JWS_ALPHABET, max_size=300))
def test_no_jws_shaped_text_raises_outside_the_tree(ring, text):
    """Text drawn from the JWS alphabet only ever raises TokenErrors."""
    issuer = TokenIssuer(ring, issuer="https://links.example.test")
    with pytest.raises(TokenError):
        issuer.verify(text, RESET)


def _claims_of(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    # Named, not a lambda: hypothesis reads the source to check it recurses.
    return st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["iss", "sub", "pur", "jti", "iat", "exp", "dat", "sfp"]),
        inner,
        max_size=8,
    )


@settings(max_examples=300, deadline=None)
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "jwk", "b64"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8)),
    ),
    payload=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
        _claims_of,
        max_leaves=12,
    ),
)
def test_signed_garbage_raises_only_token_errors(ring, header, payload):
    """Even correctly signed structures of any shape raise only TokenErrors."""
    issuer = TokenIssuer(
        ring,
        issuer="https://links.example.test",
        clock=FrozenClock(ring.keys[0].created_at),
    )
    header.setdefault("kid", ring.signing_key("HS256").key_id)
    raw = json.dumps(payload, allow_nan=True).encode()
    token = forge(header, raw, ring.signing_key("HS256"))
    with contextlib.suppress(TokenError):
        issuer.verify(token, RESET)


# --- the fast path agrees with the strict path -----------------------------------


def _outcome(issuer, token, purpose):
    try:
        return ("ok", issuer.verify(token, purpose))
    except TokenError as exc:
        return ("rejected", type(exc))


def _strict_only(issuer):
    strict = TokenIssuer(
        issuer.keys,
        issuer=issuer.issuer,
        clock=issuer._clock,
        leeway=timedelta(seconds=30),
    )
    strict._ring = dataclasses.replace(strict._ring, headers={})
    return strict


_MUTATION_ALPHABET = st.sampled_from([*"AZaz09-_.=+/ é\x00\xff", "%2E", "\u2028"])


@settings(max_examples=500, deadline=None)
@given(
    algorithm=st.sampled_from(ALGORITHMS),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["insert", "delete", "replace"]),
            st.integers(min_value=0, max_value=400),
            _MUTATION_ALPHABET,
        ),
        max_size=3,
    ),
)
def test_fast_path_accepts_and_rejects_exactly_like_the_strict_path(
    ring, algorithm, edits
):
    """Differential: any edit of a real token gets the same outcome either way."""
    clock = FrozenClock(ring.keys[0].created_at)
    issuer = TokenIssuer(ring, issuer="https://links.example.test", clock=clock)
    token = issuer.mint(RESET, subject="user:42", algorithm=algorithm).token
    for kind, position, text in edits:
        index = position % (len(token) + 1)
        if kind == "insert":
            token = token[:index] + text + token[index:]
        elif kind == "delete":
            token = token[:index] + token[index + 1 :]
        else:
            token = token[:index] + text + token[index + 1 :]
    assert _outcome(issuer, token, RESET) == _outcome(
        _strict_only(issuer), token, RESET
    )


@settings(max_examples=200, deadline=None)
@given(
    subject=st.text(
        st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
    ),
    data=st.none()
    | st.dictionaries(
        st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=4
    ),
    lifetime=st.integers(min_value=1, max_value=7200),
)
def test_pyjwt_encoded_tokens_are_accepted_like_our_own(ring, subject, data, lifetime):
    """Differential with PyJWT: what it encodes from our claims verifies identically."""
    clock = FrozenClock(ring.keys[0].created_at)
    issuer = TokenIssuer(ring, issuer="https://links.example.test", clock=clock)
    minted = issuer.mint(
        RESET, subject=subject, data=data, ttl=timedelta(seconds=lifetime)
    )
    header, payload = parts(minted.token)
    secret = unb64(ring.signing_key("HS256").to_private_jwk()["k"])
    theirs = jwt.encode(payload, secret, algorithm="HS256", headers=header)
    assert theirs == minted.token
    assert issuer.verify(theirs, RESET) == minted.claims
    decoded = jwt.decode(
        theirs,
        secret,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert decoded == payload


def test_non_ascii_signature_is_malformed_not_a_type_error(issuer):
    """A non-ASCII character in the signature never escapes as a TypeError."""
    token = issuer.mint(RESET, subject="u").token
    with pytest.raises(MalformedTokenError):
        issuer.verify(token[:-1] + "é", RESET)


def test_token_ids_never_start_with_a_dash_and_keep_128_bits():
    """Ids are CLI-safe (no leading '-') and carry at least 128 random bits."""
    from actionlinks.keys import new_key_id
    from actionlinks.tokens import new_token_id

    ids = [new_token_id() for _ in range(2000)]
    assert not any(i.startswith("-") for i in ids)
    assert len(set(ids)) == len(ids)
    assert all(len(unb64(i)) * 8 >= 136 for i in ids)
    assert not any(new_key_id().startswith("-") for _ in range(2000))
