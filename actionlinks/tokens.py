"""Single-purpose tokens: minting and strict verification of compact JWS.

Pure and synchronous. A token carries ``kid`` and an explicit ``typ`` per token
kind in its header, and ``iss``, ``sub``, ``pur`` (the action), ``jti``,
``iat``, ``ius``, ``exp`` and optionally ``dat`` (small app data) and ``sfp`` (a
keyed fingerprint of the subject's state) in its payload. ``pur``, ``ius``,
``dat`` and ``sfp`` are private claim names that collide with no IANA-registered
one. ``ius`` holds the microseconds of the issue instant that the integer ``iat``
cannot: a revocation at 12:00:00.3 must kill a link minted at 12:00:00.2 and
spare one minted at 12:00:00.7.

Verification is stricter than RFC 7519 requires, following RFC 8725: the size
is capped before any decoding; base64url must be canonical and unpadded; JSON
must be UTF-8 objects without duplicate keys; the algorithm comes from the key
selected by ``kid``, never from the header; ``crit``, ``jwk``, ``jku``, ``x5u``
and ``x5c`` are refused; NumericDates are integers; ``exp`` is required and
bounded by the purpose's maximum lifetime. Wire names (``jti``, ``exp``,
``kid``) appear only in this module.
"""

from __future__ import annotations

import binascii
import hmac
import json
import os
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from actionlinks.claims import ActionClaims, Purpose, TokenKind, instant
from actionlinks.clock import Clock, SystemClock
from actionlinks.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidSignatureError,
    MalformedTokenError,
    StateChangedError,
    TokenExpiredError,
    TokenNotYetValidError,
    WrongPurposeError,
)
from actionlinks.jws import (
    b64url_bytes,
    b64url_encode,
    compact_json,
    decode_segment,
    json_object,
    malformed,
    segment_object,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from actionlinks.keys import Algorithm, KeyRing, SigningKey
    from actionlinks.mac import PrefixedMac

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_SUBJECT_LENGTH",
    "MAX_TOKEN_LENGTH",
    "ActionClaims",
    "MintedToken",
    "Purpose",
    "TokenIssuer",
    "TokenKind",
    "check_text",
    "new_token_id",
]

MAX_TOKEN_LENGTH = 4096
"""Longer inputs are refused before any decoding."""
MAX_DATA_BYTES = 1024
"""App data is for small references (an id, a list id), not documents."""
MAX_SUBJECT_LENGTH = 256
_MAX_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z
_TOKEN_ID_BYTES = 17  # 136 random bits, >= 128 after excluding a leading "-"
_STATE_TAG_BYTES = 16
_HEADER_NAMES = frozenset({"alg", "kid", "typ"})
_KEY_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"})
_CLAIMS = frozenset(
    {"iss", "sub", "pur", "jti", "iat", "ius", "exp", "dat", "sfp", "scope"}
)
_MICROS = 1_000_000
_MAX_TOKEN_ID_LENGTH = 64
_STANDARD_CLAIMS = 7  # iss, sub, pur, jti, iat, ius and exp
_DASH = ord("-")
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")


@dataclass(frozen=True, slots=True)
class _Header:
    """One header segment this issuer writes, with the key and kind it names."""

    key: SigningKey
    kind: TokenKind
    prefix: str
    """The header segment and the dot that follows it."""
    mac: PrefixedMac | None
    """For HS256: the key's MAC with ``prefix`` absorbed."""

    def signature(self, body: bytes) -> bytes:
        """The base64url signature of ``prefix + body``."""
        if self.mac is not None:
            return b64url_bytes(self.mac.digest(body))
        return b64url_bytes(self.key.sign(self.prefix.encode("ascii") + body))

    def verifies(self, body: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is the canonical signature of ``prefix + body``."""
        if self.mac is not None:
            return hmac.compare_digest(b64url_bytes(self.mac.digest(body)), signature)
        try:
            raw = decode_segment(signature.decode("ascii"))
        except (MalformedTokenError, ValueError):
            return False
        return self.key.verify(self.prefix.encode("ascii") + body, raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Signers:
    """An algorithm's signing keys: the established one and a scheduled one."""

    established: SigningKey | None
    scheduled: SigningKey | None
    scheduled_from: int
    """When the scheduled key takes over, in microseconds since the epoch."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ring:
    """A key ring and everything derived from it, swapped as one."""

    keys: KeyRing
    headers: Mapping[bytes, _Header]
    """Every header this issuer writes, by its segment: the fast path's keys."""
    written: Mapping[tuple[str, TokenKind], _Header]
    signers: Mapping[str, _Signers]


def _ring(keys: KeyRing) -> _Ring:
    written: dict[tuple[str, TokenKind], _Header] = {}
    for key in keys:
        for kind in TokenKind:
            header = {"alg": key.algorithm, "kid": key.key_id, "typ": kind.typ}
            segment = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
            prefix = f"{segment}."
            written[key.key_id, kind] = _Header(
                key, kind, prefix, key.prefixed_mac(prefix.encode("ascii"))
            )
    signers: dict[str, _Signers] = {}
    for algorithm in {key.algorithm for key in keys}:
        active = [k for k in keys if k.algorithm == algorithm and k.is_active]
        scheduled = next((k for k in active if k.signs_from is not None), None)
        signers[algorithm] = _Signers(
            established=next((k for k in active if k.signs_from is None), None),
            scheduled=scheduled,
            scheduled_from=(
                (scheduled.signs_from - instant(0)) // timedelta(microseconds=1)
                if scheduled is not None and scheduled.signs_from is not None
                else 0
            ),
        )
    return _Ring(
        keys=keys,
        headers={h.prefix[:-1].encode("ascii"): h for h in written.values()},
        written=written,
        signers=signers,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MintedToken:
    """A freshly minted token and its claims. The repr hides the token."""

    token: str = field(repr=False)
    claims: ActionClaims


def new_token_id() -> str:
    """A random token id that never starts with "-" (it would read as a CLI flag)."""
    while True:
        token_id = b64url_bytes(os.urandom(_TOKEN_ID_BYTES))
        if token_id[0] != _DASH:
            return token_id.decode("ascii")


def _string(claims: Mapping[str, Any], name: str, *, limit: int = 512) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        malformed(f"claim {name!r} must be a non-empty string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedTokenError(f"claim {name!r} is not valid text") from exc
    return value


def _numeric_date(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    if value is None:
        malformed(f"claim {name!r} is missing")
    if type(value) is not int or not 0 <= value <= _MAX_NUMERIC_DATE:
        malformed(f"claim {name!r} must be an integer NumericDate")
    return value


def _sub_second(claims: Mapping[str, Any]) -> int:
    value = claims.get("ius", 0)
    if type(value) is not int or not 0 <= value < 1_000_000:
        malformed("claim 'ius' must be an integer from 0 to 999999")
    return value


_NONE: frozenset[str] = frozenset()
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(
    value: object, what: str, *, field: str, limit: int, controls: bool = False
) -> str:
    """Return ``value`` if it is 1-``limit`` characters of valid Unicode text.

    Args:
        value: the candidate.
        what: its name in the error message.
        field: its wire name, carried by the error.
        limit: the most characters allowed.
        controls: whether control characters (NUL, newlines, …) are allowed.

    Raises:
        InvalidArgumentError: not a string, empty, too long, with lone
            surrogates (undecodable bytes) or, unless allowed, control
            characters.
    """
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidArgumentError(
            f"{what} must be 1-{limit} characters of text", field=field
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{what} is not valid Unicode text", field=field
        ) from exc
    if not controls and _CONTROL.search(value):
        raise InvalidArgumentError(
            f"{what} must not contain control characters", field=field
        )
    return value


def _lifetime(purpose: Purpose, ttl: timedelta) -> int:
    """``ttl`` in whole seconds, if ``purpose`` allows it."""
    if ttl < timedelta(seconds=1) or ttl > purpose.max_ttl:
        raise InvalidArgumentError(
            f"{purpose.name}: ttl must be from 1 to {purpose.max_seconds} seconds",
            field="ttl",
        )
    return int(ttl.total_seconds())


def _encode_state(state: str | bytes) -> bytes:
    return state.encode("utf-8") if isinstance(state, str) else state


class TokenIssuer:
    """Mints and verifies tokens with a key ring, for one issuer.

    Args:
        keys: the key ring; its active key of ``algorithm`` signs.
        issuer: the ``iss`` of every token (the public base URL by default).
        clock: the source of time.
        leeway: the clock skew tolerated on ``exp`` and ``iat``.
        algorithm: the default signing algorithm.
    """

    __slots__ = (
        "_algorithm",
        "_clock",
        "_issuer",
        "_leeway",
        "_ring",
    )

    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str,
        clock: Clock | None = None,
        leeway: timedelta = timedelta(seconds=30),
        algorithm: Algorithm = "HS256",
    ) -> None:
        """Bind the ring, issuer, clock and leeway."""
        if not issuer:
            raise ConfigurationError("the issuer must not be empty")
        if leeway < timedelta(0) or leeway > timedelta(minutes=5):
            raise ConfigurationError("leeway must be between 0 and 5 minutes")
        self._issuer = issuer
        self._clock: Clock = clock or SystemClock()
        self._leeway = int(leeway.total_seconds())
        self._algorithm: Algorithm = algorithm
        self._ring = self._prepare(keys)

    def _prepare(self, keys: KeyRing) -> _Ring:
        keys.signing_key(self._algorithm)  # fail now, not at the first mint
        return _ring(keys)

    def use_keys(self, keys: KeyRing) -> None:
        """Sign and verify with ``keys`` from now on (a reloaded keys file).

        The swap is one assignment: a mint or verify in progress finishes with
        the ring it started with.

        Raises:
            ConfigurationError: ``keys`` has no signer of the default algorithm.
        """
        self._ring = self._prepare(keys)

    @property
    def issuer(self) -> str:
        """The ``iss`` of every token."""
        return self._issuer

    @property
    def keys(self) -> KeyRing:
        """The key ring."""
        return self._ring.keys

    def __repr__(self) -> str:
        """Name the issuer, not the keys."""
        return f"TokenIssuer(issuer={self._issuer!r}, keys={len(self._ring.keys)})"

    def mint(  # noqa: PLR0913 - the optional parts of a token, all keyword-only
        self,
        purpose: Purpose,
        *,
        subject: str,
        ttl: timedelta | None = None,
        data: Mapping[str, Any] | None = None,
        state: str | bytes | None = None,
        algorithm: Algorithm | None = None,
        scopes: Iterable[str] = (),
    ) -> MintedToken:
        """Mint a token for ``purpose`` and ``subject``.

        Args:
            purpose: what the token is for.
            subject: who it is for (a user id, an e-mail address).
            ttl: its lifetime in whole seconds; the purpose's default when
                omitted.
            data: small app data (a JSON object of at most 1 KiB encoded).
            state: a fingerprint of the subject's current state (password hash,
                e-mail, a counter); the token dies when it changes. Only a keyed
                hash of it goes into the token.
            algorithm: the signing algorithm; the issuer's default when omitted.
            scopes: what an access token allows (the RFC 8693 ``scope`` claim).

        Raises:
            InvalidArgumentError: a bad subject, lifetime, data, scope or
                missing state (``field`` names which).
        """
        if not (
            type(subject) is str
            and 0 < len(subject) <= MAX_SUBJECT_LENGTH
            and subject.isascii()
            and subject.isprintable()
        ):
            check_text(subject, "the subject", field="sub", limit=MAX_SUBJECT_LENGTH)
        if isinstance(state, str):
            check_text(
                state, "the state fingerprint", field="state", limit=4096, controls=True
            )
        lifetime = purpose.ttl_seconds if ttl is None else _lifetime(purpose, ttl)
        if purpose.binds_state and state is None:
            raise InvalidArgumentError(
                f"{purpose.name} binds state; pass state=", field="state"
            )
        ring = self._ring
        now = self._clock.micros()
        key = self._signer(ring, algorithm or self._algorithm, now)
        issued, micros = divmod(now, _MICROS)
        token_id = new_token_id()
        payload: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "pur": purpose.name,
            "jti": token_id,
            "iat": issued,
            "ius": micros,
            "exp": issued + lifetime,
        }
        if data is not None:
            payload["dat"] = _checked_data(data)
        if state is not None:
            payload["sfp"] = _state_tag(key, purpose.name, subject, state)
        scope = " ".join(sorted(set(scopes))) if scopes else ""
        if scope:
            if not _SCOPE.fullmatch(scope):
                raise InvalidArgumentError(
                    "scopes must be printable ASCII without spaces", field="scope"
                )
            payload["scope"] = scope
        header = ring.written[key.key_id, purpose.kind]
        body = b64url_bytes(compact_json(payload).encode("ascii"))
        signed = b".".join((body, header.signature(body)))
        return MintedToken(
            token=header.prefix + signed.decode("ascii"),
            claims=self._claims(key, purpose, payload),
        )

    @staticmethod
    def _signer(ring: _Ring, algorithm: Algorithm, now: int) -> SigningKey:
        signers = ring.signers.get(algorithm)
        if signers is not None:
            if signers.scheduled is not None and now >= signers.scheduled_from:
                return signers.scheduled
            if signers.established is not None:
                return signers.established
        return ring.keys.signing_key(algorithm)  # raises: no key signs it

    def verify(
        self,
        token: str | bytes,
        purpose: Purpose | Mapping[str, Purpose],
        *,
        state: str | bytes | None = None,
        ignore_state: bool = False,
    ) -> ActionClaims:
        """Verify ``token`` strictly and return its claims.

        Args:
            token: the compact JWS, as text or bytes.
            purpose: the one purpose it must be for, or a mapping of action name
                to purpose from which the token's own action is looked up.
            state: the subject's current state fingerprint, for state-bound
                tokens.
            ignore_state: skip the state check (inspection only, never redeem).

        Raises:
            MalformedTokenError: not a well-formed, canonical token of ours.
            InvalidSignatureError: bad signature, unknown ``kid``, or an
                algorithm the key does not have.
            WrongPurposeError: another kind, action or issuer.
            TokenExpiredError: ``exp`` has passed (beyond the leeway).
            TokenNotYetValidError: ``iat`` lies in the future (beyond the leeway).
            StateChangedError: the state fingerprint no longer matches.
        """
        if type(token) is str and len(token) <= MAX_TOKEN_LENGTH and token.isascii():
            # The fast path: only for a header byte for byte one this issuer
            # writes; anything it does not accept goes the strict way below.
            head, _, rest = token.encode("ascii").partition(b".")
            written = self._ring.headers.get(head)
            if written is not None:
                accepted = self._verify_fast(
                    written, rest, purpose, state, ignore_state=ignore_state
                )
                if accepted is not None:
                    return accepted
        key, header, claims = self._authenticate(token)
        typ = header.get("typ")
        if not isinstance(purpose, Purpose) and typ != TokenKind.LINK.typ:
            raise WrongPurposeError("the token is of another kind")
        resolved = self._resolve(purpose, claims)
        if typ != resolved.kind.typ:
            raise WrongPurposeError("the token is of another kind")
        if claims.get("iss") != self._issuer:
            raise WrongPurposeError("the token comes from another issuer")
        return self._check_claims(
            key, resolved, claims, state=state, ignore_state=ignore_state
        )

    def _verify_fast(
        self,
        header: _Header,
        rest: bytes,
        purpose: Purpose | Mapping[str, Purpose],
        state: str | bytes | None,
        *,
        ignore_state: bool,
    ) -> ActionClaims | None:
        """The claims of a token in the exact form this issuer writes, or ``None``.

        ``header`` is the one this issuer writes that the token starts with,
        ``rest`` the token after it. The fast path only ever accepts what the
        strict path accepts: the signature must be the canonical encoding of
        the expected one, the payload canonical base64url of strict JSON, and
        every claim rule must hold (:meth:`_accept`). On any doubt it returns
        ``None`` and the strict path decides, with its precise errors; the two
        are differentially tested.
        """
        body, _, signature = rest.partition(b".")
        if not header.verifies(body, signature):
            return None
        claims = segment_object(body)
        if claims is None:
            return None
        return self._accept(header, claims, purpose, state, ignore_state=ignore_state)

    def _accept(
        self,
        header: _Header,
        claims: dict[str, Any],
        purpose: Purpose | Mapping[str, Purpose],
        state: str | bytes | None,
        *,
        ignore_state: bool,
    ) -> ActionClaims | None:
        """Every claim rule of :meth:`_check_claims` in one pass, or ``None``.

        Only plain ASCII subjects and ids pass here; anything else goes the
        strict way. Raises only what the strict path would raise for the same
        token: a state mismatch, once every other rule holds.
        """
        name = claims.get("pur")
        if not isinstance(purpose, Purpose):
            found = _listed(purpose, name, header.kind)
            if found is None:
                return None
            purpose = found
        elif name != purpose.name:
            return None
        if header.kind is not purpose.kind or claims.get("iss") != self._issuer:
            return None
        subject = claims.get("sub")
        token_id = claims.get("jti")
        issued = claims.get("iat")
        micros = claims.get("ius")  # always written; a token without it goes strict
        expires = claims.get("exp")
        now = self._clock.micros()
        if not (
            type(subject) is str
            and type(token_id) is str
            and type(issued) is int
            and type(micros) is int
            and type(expires) is int
            and 0 < len(subject) <= MAX_SUBJECT_LENGTH
            and 0 < len(token_id) <= _MAX_TOKEN_ID_LENGTH
            and subject.isascii()
            and token_id.isascii()
            and 0 <= issued < expires <= issued + purpose.max_seconds
            and expires <= _MAX_NUMERIC_DATE
            and 0 <= micros < _MICROS
            and (issued - self._leeway) * _MICROS <= now
            and now < (expires + self._leeway) * _MICROS
        ):
            return None
        if len(claims) == _STANDARD_CLAIMS:  # the seven above, nothing else
            data, bound, scope = None, False, ""
            if purpose.binds_state and not ignore_state:
                _check_state(header.key, purpose, subject, None, state)
        else:
            extras = _extras(claims)
            if extras is None:
                return None
            data, tag, scope = extras
            bound = tag is not None
            if not ignore_state and (bound or purpose.binds_state):
                _check_state(header.key, purpose, subject, tag, state)
        return ActionClaims.from_numbers(
            purpose.name,
            subject,
            token_id,
            (issued, micros, expires),
            self._issuer,
            (header.key.key_id, header.key.algorithm),
            purpose.kind,
            data,
            bound,
            frozenset(scope.split()) if scope else _NONE,
        )

    def _authenticate(
        self, token: str | bytes
    ) -> tuple[SigningKey, dict[str, Any], dict[str, Any]]:
        if not isinstance(token, str | bytes):
            malformed("the token must be text")
        if len(token) > MAX_TOKEN_LENGTH:
            malformed(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError as exc:
                raise MalformedTokenError("the token is not ASCII") from exc
        parts = token.split(".")
        if len(parts) != 3:
            malformed("a compact JWS has exactly three segments")
        header_segment, payload_segment, signature_segment = parts
        try:
            header_raw = decode_segment(header_segment)
            payload_raw = decode_segment(payload_segment)
            signature = decode_segment(signature_segment)
        except (binascii.Error, ValueError) as exc:
            raise MalformedTokenError("a segment is not base64url") from exc
        header = json_object(header_raw, "header")
        key = self._select_key(header)
        message = f"{header_segment}.{payload_segment}".encode("ascii")
        if not key.verify(message, signature):
            raise InvalidSignatureError("the signature does not verify")
        return key, header, json_object(payload_raw, "payload")

    def _select_key(self, header: Mapping[str, Any]) -> SigningKey:
        if "crit" in header:
            malformed("critical header extensions are not supported")
        if _KEY_HEADERS.intersection(header):
            raise InvalidSignatureError("keys named in a token are never trusted")
        if not _HEADER_NAMES.issuperset(header):
            malformed("unexpected header parameters")
        algorithm = header.get("alg")
        key_id = header.get("kid")
        if not isinstance(algorithm, str):
            malformed("the header has no algorithm")
        key = self._ring.keys.get(key_id) if isinstance(key_id, str) else None
        if key is None:
            raise InvalidSignatureError("unknown or missing key id")
        if algorithm != key.algorithm:
            raise InvalidSignatureError("the algorithm is not the key's algorithm")
        return key

    @staticmethod
    def _resolve(
        purpose: Purpose | Mapping[str, Purpose], claims: Mapping[str, Any]
    ) -> Purpose:
        name = _string(claims, "pur", limit=64)
        if isinstance(purpose, Purpose):
            if name != purpose.name:
                raise WrongPurposeError("the token is for another action")
            return purpose
        found = purpose.get(name)
        if found is None:
            raise WrongPurposeError("the token is for an unknown action")
        return found

    def _check_claims(
        self,
        key: SigningKey,
        purpose: Purpose,
        claims: dict[str, Any],
        *,
        state: str | bytes | None,
        ignore_state: bool,
    ) -> ActionClaims:
        if not _CLAIMS.issuperset(claims):
            malformed("unexpected claims")
        subject = _string(claims, "sub", limit=MAX_SUBJECT_LENGTH)
        _string(claims, "jti", limit=_MAX_TOKEN_ID_LENGTH)
        issued = _numeric_date(claims, "iat")
        _sub_second(claims)
        expires = _numeric_date(claims, "exp")
        if expires <= issued:
            malformed("the token expires before it was issued")
        if expires - issued > purpose.max_seconds:
            malformed("the lifetime exceeds the action's maximum")
        now = self._clock.micros()
        if now >= (expires + self._leeway) * _MICROS:
            raise TokenExpiredError(
                "the token has expired",
                expired_at=instant(expires),
                action=purpose.name,
                subject=subject,
                token_id=claims["jti"],
                issued_at=instant(issued, _sub_second(claims)),
                data=data if isinstance(data := claims.get("dat"), dict) else None,
            )
        if (issued - self._leeway) * _MICROS > now:
            raise TokenNotYetValidError(
                "the token is not valid yet",
                not_before=instant(issued - self._leeway),
            )
        data = claims.get("dat")
        if data is not None and not isinstance(data, dict):
            malformed("claim 'dat' must be a JSON object")
        tag = claims.get("sfp")
        if tag is not None and (not isinstance(tag, str) or not tag.isascii()):
            malformed("claim 'sfp' must be a base64url string")
        scope = claims.get("scope", "")
        if not isinstance(scope, str) or (scope and not _SCOPE.fullmatch(scope)):
            malformed("claim 'scope' must be space-separated scope names")
        if not ignore_state:
            _check_state(key, purpose, subject, tag, state)
        return self._claims(key, purpose, claims)

    def _claims(
        self, key: SigningKey, purpose: Purpose, payload: Mapping[str, Any]
    ) -> ActionClaims:
        """The claims of a payload this issuer wrote or has just validated."""
        return ActionClaims.from_numbers(
            purpose.name,
            payload["sub"],
            payload["jti"],
            (payload["iat"], payload.get("ius", 0), payload["exp"]),
            self._issuer,
            (key.key_id, key.algorithm),
            purpose.kind,
            payload.get("dat"),
            "sfp" in payload,
            frozenset(payload["scope"].split()) if "scope" in payload else _NONE,
        )


def _listed(
    purposes: Mapping[str, Purpose], name: object, kind: TokenKind
) -> Purpose | None:
    """The purpose a link token names among ``purposes``, or ``None``."""
    if kind is not TokenKind.LINK or type(name) is not str:
        return None
    return purposes.get(name)


def _extras(
    claims: dict[str, Any],
) -> tuple[dict[str, Any] | None, str | None, str] | None:
    """A payload's data, state tag and scope if they are well-formed, else ``None``.

    A present ``sfp`` must be a string here (the strict path also takes null).
    """
    data = claims.get("dat")
    tag = claims.get("sfp")
    scope = claims.get("scope", "")
    if (
        not _CLAIMS.issuperset(claims)
        or (data is not None and type(data) is not dict)
        or ("sfp" in claims and (type(tag) is not str or not tag.isascii()))
        or type(scope) is not str
        or (scope and not _SCOPE.fullmatch(scope))
    ):
        return None
    return data, tag, scope


def _state_tag(key: SigningKey, name: str, subject: str, state: str | bytes) -> str:
    message = b"\0".join((name.encode(), subject.encode(), _encode_state(state)))
    digest = hmac.digest(key.derive_secret(b"state"), message, "sha256")
    return b64url_encode(digest[:_STATE_TAG_BYTES])


def _check_state(
    key: SigningKey,
    purpose: Purpose,
    subject: str,
    tag: str | None,
    state: str | bytes | None,
) -> None:
    if tag is None:
        if purpose.binds_state:
            raise StateChangedError("the token is not bound to the subject's state")
        return
    if state is None:
        raise StateChangedError(
            "the token is bound to the subject's state and none was given"
        )
    expected = _state_tag(key, purpose.name, subject, state)
    if not hmac.compare_digest(expected.encode(), tag.encode()):
        raise StateChangedError("the subject's state changed since the token was made")


def _checked_data(data: Mapping[str, Any]) -> dict[str, Any]:
    try:
        encoded = json.dumps(
            dict(data), separators=(",", ":"), allow_nan=False, ensure_ascii=False
        ).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidArgumentError(
            "data must be a JSON-serialisable object", field="data"
        ) from exc
    if len(encoded) > MAX_DATA_BYTES:
        raise InvalidArgumentError(
            f"data must encode to at most {MAX_DATA_BYTES} bytes", field="data"
        )
    result: dict[str, Any] = json.loads(encoded)
    return result
