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
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

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
    b64url_encode,
    decode_segment,
    json_object,
    malformed,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from actionlinks.keys import Algorithm, KeyRing, SigningKey

MAX_TOKEN_LENGTH = 4096
"""Longer inputs are refused before any decoding."""
MAX_DATA_BYTES = 1024
"""App data is for small references (an id, a list id), not documents."""
MAX_SUBJECT_LENGTH = 256
_MAX_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z
_TOKEN_ID_BYTES = 17  # 136 random bits, >= 128 after excluding a leading "-"
_STATE_TAG_BYTES = 16
_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_HEADER_NAMES = frozenset({"alg", "kid", "typ"})
_KEY_HEADERS = frozenset({"jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256"})
_CLAIMS = frozenset(
    {"iss", "sub", "pur", "jti", "iat", "ius", "exp", "dat", "sfp", "scope"}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")


class TokenKind(Enum):
    """The kinds of token, each with its own ``typ``; one never passes as another."""

    LINK = "al-link+jwt"
    ACCESS = "al-access+jwt"

    @property
    def typ(self) -> str:
        """The ``typ`` header value."""
        return self.value


def validate_name(name: str) -> str:
    """Return ``name`` if it is a kebab-case action name.

    Raises:
        ConfigurationError: it is not lowercase kebab-case of 1-64 characters.
    """
    if len(name) > 64 or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"action name {name[:64]!r} must be lowercase kebab-case "
            "(letters, digits, single dashes), at most 64 characters"
        )
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class Purpose:
    """What a token is for: its action name, lifetimes, kind and state binding.

    Attributes:
        name: the kebab-case action name bound into every token.
        ttl: the default lifetime of a new token.
        max_ttl: the longest lifetime a token may carry; longer ones are refused.
        kind: the token kind (``typ``).
        binds_state: whether every token must carry a state fingerprint.
    """

    name: str
    ttl: timedelta
    max_ttl: timedelta
    kind: TokenKind = TokenKind.LINK
    binds_state: bool = False

    def __post_init__(self) -> None:
        """Validate the name and lifetimes."""
        validate_name(self.name)
        if self.ttl <= timedelta(0) or self.ttl % timedelta(seconds=1):
            raise ConfigurationError(
                f"{self.name}: ttl must be a positive whole number of seconds"
            )
        if self.max_ttl < self.ttl or self.max_ttl % timedelta(seconds=1):
            raise ConfigurationError(
                f"{self.name}: max_ttl must be whole seconds and at least ttl"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionClaims:
    """The verified content of a token, in the library's own words."""

    action: str
    subject: str
    token_id: str
    issued_at: datetime
    expires_at: datetime
    issuer: str
    key_id: str
    algorithm: Algorithm
    kind: TokenKind = TokenKind.LINK
    data: Mapping[str, Any] | None = None
    is_state_bound: bool = False
    scopes: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ring:
    """A key ring and the header segments its keys write, swapped as one."""

    keys: KeyRing
    known: Mapping[str, tuple[SigningKey, str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class MintedToken:
    """A freshly minted token and its claims. The repr hides the token."""

    token: str = field(repr=False)
    claims: ActionClaims


def new_token_id() -> str:
    """A random token id that never starts with "-" (it would read as a CLI flag)."""
    while True:
        token_id = secrets.token_urlsafe(_TOKEN_ID_BYTES)
        if not token_id.startswith("-"):
            return token_id


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


def _instant(seconds: int, microseconds: int = 0) -> datetime:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.replace(microsecond=microseconds) if microseconds else moment


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
        "_headers",
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
        self._headers: dict[tuple[str, TokenKind], str] = {}
        self._ring = self._prepare(keys)

    def _prepare(self, keys: KeyRing) -> _Ring:
        keys.signing_key(self._algorithm)  # fail now, not at the first mint
        # The exact header segments this issuer writes, for the fast path.
        known = {
            self._header(key, kind): (key, kind.typ)
            for key in keys
            for kind in TokenKind
        }
        return _Ring(keys=keys, known=known)

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

    def _header(self, key: SigningKey, kind: TokenKind) -> str:
        cached = self._headers.get((key.key_id, kind))
        if cached is None:
            header = {"alg": key.algorithm, "kid": key.key_id, "typ": kind.typ}
            cached = b64url_encode(json.dumps(header, separators=(",", ":")).encode())
            self._headers[key.key_id, kind] = cached
        return cached

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
            ttl: its lifetime; the purpose's default when omitted.
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
        check_text(subject, "the subject", field="sub", limit=MAX_SUBJECT_LENGTH)
        if state is not None and isinstance(state, str):
            check_text(
                state, "the state fingerprint", field="state", limit=4096, controls=True
            )
        lifetime = purpose.ttl if ttl is None else ttl
        if lifetime <= timedelta(0) or lifetime > purpose.max_ttl:
            raise InvalidArgumentError(
                f"{purpose.name}: ttl must be positive and at most "
                f"{int(purpose.max_ttl.total_seconds())} seconds",
                field="ttl",
            )
        if purpose.binds_state and state is None:
            raise InvalidArgumentError(
                f"{purpose.name} binds state; pass state=", field="state"
            )
        key = self._ring.keys.signing_key(
            algorithm or self._algorithm, now=self._clock.now()
        )
        since_epoch = self._clock.now() - _EPOCH
        issued = since_epoch.days * 86_400 + since_epoch.seconds
        expires = issued + int(lifetime.total_seconds())
        token_id = new_token_id()
        payload: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "pur": purpose.name,
            "jti": token_id,
            "iat": issued,
            "ius": since_epoch.microseconds,
            "exp": expires,
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
        signing_input = (
            f"{self._header(key, purpose.kind)}."
            f"{b64url_encode(json.dumps(payload, separators=(',', ':')).encode())}"
        )
        signature = b64url_encode(key.sign(signing_input.encode("ascii")))
        return MintedToken(
            token=f"{signing_input}.{signature}",
            claims=self._claims(key, purpose, payload),
        )

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
        fast = self._authenticate_fast(token)
        if fast is None:
            key, header, claims = self._authenticate(token)
            typ = header.get("typ")
        else:
            key, typ, claims = fast
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

    def _authenticate_fast(
        self, token: object
    ) -> tuple[SigningKey, str, dict[str, Any]] | None:
        """Authenticate a token in the exact form this issuer writes, or ``None``.

        The fast path only ever accepts: the header must be byte-for-byte one
        this issuer writes (so nothing in it needs parsing), the signature must
        equal the canonical encoding of the expected MAC, and the payload must
        pass the same canonical-base64url and strict-JSON checks. On any doubt
        it returns ``None`` and :meth:`_authenticate` decides, with its precise
        errors; the two are differentially tested.
        """
        if type(token) is not str or len(token) > MAX_TOKEN_LENGTH:
            return None
        header_segment, _, rest = token.partition(".")
        known = self._ring.known.get(header_segment)
        if known is None:
            return None
        payload_segment, _, signature_segment = rest.partition(".")
        key, typ = known
        try:
            message = f"{header_segment}.{payload_segment}".encode("ascii")
            if key.algorithm == "HS256":
                if not hmac.compare_digest(
                    b64url_encode(key.sign(message)), signature_segment
                ):
                    return None
            elif not key.verify(message, decode_segment(signature_segment)):
                return None
            claims = json_object(decode_segment(payload_segment), "payload")
        except (MalformedTokenError, binascii.Error, ValueError, TypeError):
            return None  # TypeError: compare_digest on non-ASCII text
        return key, typ, claims

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
        _string(claims, "jti", limit=64)
        issued = _numeric_date(claims, "iat")
        _sub_second(claims)
        expires = _numeric_date(claims, "exp")
        if expires <= issued:
            malformed("the token expires before it was issued")
        if expires - issued > purpose.max_ttl.total_seconds():
            malformed("the lifetime exceeds the action's maximum")
        now = self._clock.now().timestamp()
        if now >= expires + self._leeway:
            raise TokenExpiredError(
                "the token has expired",
                expired_at=_instant(expires),
                action=purpose.name,
                subject=subject,
                token_id=claims["jti"],
                issued_at=_instant(issued, _sub_second(claims)),
                data=data if isinstance(data := claims.get("dat"), dict) else None,
            )
        if issued > now + self._leeway:
            raise TokenNotYetValidError(
                "the token is not valid yet",
                not_before=_instant(issued - self._leeway),
            )
        data = claims.get("dat")
        if data is not None and not isinstance(data, dict):
            malformed("claim 'dat' must be a JSON object")
        tag = claims.get("sfp")
        if tag is not None and not isinstance(tag, str):
            malformed("claim 'sfp' must be a string")
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
        return ActionClaims(
            action=purpose.name,
            subject=payload["sub"],
            token_id=payload["jti"],
            issued_at=_instant(payload["iat"], payload.get("ius", 0)),
            expires_at=_instant(payload["exp"]),
            issuer=self._issuer,
            key_id=key.key_id,
            algorithm=key.algorithm,
            kind=purpose.kind,
            data=payload.get("dat"),
            is_state_bound="sfp" in payload,
            scopes=frozenset(payload["scope"].split()) if "scope" in payload else _NONE,
        )


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
