"""The JWT header of a webhook: EdDSA or ES256, bound to the exact body.

Every delivery can carry, by default as ``Authorization: Bearer <jwt>``, a
compact JWS of its own kind (``typ`` ``al-webhook+jwt``: never a link's, never
an access token's) signed by the service's EdDSA (or ES256) key, whose ``kid``
is in ``GET /.well-known/jwks.json``. Its claims::

    iss          the service's issuer
    aud          the destination URL
    jti          the message id (the webhook-id header)
    iat, exp     when it was made; at most 5 minutes later
    body_sha256  base64url SHA-256 of the exact body bytes

An API gateway that validates JWTs against a JWKS URL (``aud``, ``iss``,
``exp``) accepts it with no code; :func:`verify_webhook_jwt` also checks the
body hash and the message id, which closes the rest. The wire names of this
token live here, as those of links live in :mod:`actionlinks.tokens`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from actionlinks.errors import MalformedTokenError, WebhookVerificationError
from actionlinks.jws import b64url_encode, decode_segment, json_object

if TYPE_CHECKING:
    from actionlinks.keys import PublicKeySet, SigningKey

WEBHOOK_TYP = "al-webhook+jwt"
MAX_LIFETIME = timedelta(minutes=5)
MAX_TOKEN_LENGTH = 4096
_HEADER_NAMES = frozenset({"alg", "kid", "typ"})
_CLAIMS = frozenset({"iss", "aud", "jti", "iat", "exp", "body_sha256"})
_MAX_NUMERIC_DATE = 253_402_300_799  # 9999-12-31T23:59:59Z


def body_digest(body: bytes) -> str:
    """The ``body_sha256`` claim of ``body``: base64url SHA-256, unpadded."""
    return b64url_encode(hashlib.sha256(body).digest())


def mint_webhook_jwt(  # noqa: PLR0913 - the parts of the token, keyword-only
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    message_id: str,
    body: bytes,
    now: datetime,
    lifetime: timedelta = MAX_LIFETIME,
) -> str:
    """The JWT header value (without ``Bearer``) for one delivery.

    Args:
        key: an EdDSA or ES256 signing key of the service.
        issuer: the service's issuer (``iss``).
        audience: the destination URL (``aud``).
        message_id: the message id (``jti``), as in ``webhook-id``.
        body: the exact bytes sent.
        now: when it is made.
        lifetime: how long it is valid (at most 5 minutes).
    """
    issued = int(now.timestamp())
    header = {"alg": key.algorithm, "kid": key.key_id, "typ": WEBHOOK_TYP}
    payload = {
        "iss": issuer,
        "aud": audience,
        "jti": message_id,
        "iat": issued,
        "exp": issued + int(min(lifetime, MAX_LIFETIME).total_seconds()),
        "body_sha256": body_digest(body),
    }
    signing_input = (
        f"{b64url_encode(json.dumps(header, separators=(',', ':')).encode())}."
        f"{b64url_encode(json.dumps(payload, separators=(',', ':')).encode())}"
    )
    signature = key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookJwtClaims:
    """What a verified webhook JWT says."""

    issuer: str
    audience: str
    message_id: str
    issued_at: datetime
    expires_at: datetime
    key_id: str


def _refuse(
    message: str, reason: str = "no_valid_signature"
) -> WebhookVerificationError:
    return WebhookVerificationError(message, reason=reason)


def verify_webhook_jwt(  # noqa: PLR0913 - what a receiver checks, keyword-only
    token: str,
    *,
    keys: PublicKeySet,
    audience: str,
    body: bytes,
    now: datetime,
    leeway: timedelta = timedelta(seconds=30),
    issuer: str | None = None,
) -> WebhookJwtClaims:
    """Verify a webhook JWT strictly against ``keys`` and the exact ``body``.

    Args:
        token: the compact JWS (without ``Bearer``).
        keys: the sender's public keys (its JWKS).
        audience: this receiver's URL, as the sender knows it.
        body: the exact bytes received.
        now: the current instant.
        leeway: clock skew tolerated on ``iat`` and ``exp``.
        issuer: the expected ``iss``, when the receiver knows it.

    Raises:
        WebhookVerificationError: anything else than a valid token of this
            kind, for this audience and this body.
    """
    header, payload, key_id = _authenticate(token, keys)
    del header
    claims = _claims(payload)
    if not hmac.compare_digest(
        claims["aud"].encode("utf-8", "replace"), audience.encode("utf-8", "replace")
    ):
        raise _refuse("the token is for another destination")
    if issuer is not None and claims["iss"] != issuer:
        raise _refuse("the token comes from another issuer")
    if not hmac.compare_digest(
        claims["body_sha256"].encode(), body_digest(body).encode()
    ):
        raise _refuse("the body is not the one that was signed")
    issued, expires = claims["iat"], claims["exp"]
    if not 0 < expires - issued <= MAX_LIFETIME.total_seconds():
        raise _refuse("the token's lifetime is out of bounds", "malformed")
    stamp = now.timestamp()
    if stamp >= expires + leeway.total_seconds():
        raise _refuse("the token has expired", "stale")
    if issued > stamp + leeway.total_seconds():
        raise _refuse("the token was issued in the future", "future")
    return WebhookJwtClaims(
        issuer=claims["iss"],
        audience=claims["aud"],
        message_id=claims["jti"],
        issued_at=datetime.fromtimestamp(issued, UTC),
        expires_at=datetime.fromtimestamp(expires, UTC),
        key_id=key_id,
    )


def _authenticate(
    token: str, keys: PublicKeySet
) -> tuple[dict[str, Any], dict[str, Any], str]:
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise _refuse("not a compact JWS", "malformed")
    header_segment, payload_segment, signature_segment = token.split(".")
    try:
        header = json_object(decode_segment(header_segment), "header")
        payload = json_object(decode_segment(payload_segment), "payload")
        signature = decode_segment(signature_segment)
        message = f"{header_segment}.{payload_segment}".encode("ascii")
    except (MalformedTokenError, UnicodeError, ValueError) as exc:
        raise _refuse("not a well-formed JWS", "malformed") from exc
    if not _HEADER_NAMES.issuperset(header) or header.get("typ") != WEBHOOK_TYP:
        raise _refuse("not a webhook token")
    key_id = header.get("kid")
    key = keys.get(key_id) if isinstance(key_id, str) else None
    if key is None or header.get("alg") != key.algorithm:
        raise _refuse("unknown key or algorithm")
    if not key.verify(message, signature):
        raise _refuse("the signature does not verify")
    return header, payload, key.key_id


def _claims(payload: dict[str, Any]) -> dict[str, Any]:
    if set(payload) != _CLAIMS:
        raise _refuse("unexpected or missing claims", "malformed")
    for name in ("iss", "aud", "jti", "body_sha256"):
        value = payload[name]
        if not isinstance(value, str) or not 0 < len(value) <= 2048:
            raise _refuse(f"claim {name!r} must be text", "malformed")
    for name in ("iat", "exp"):
        value = payload[name]
        if type(value) is not int or not 0 <= value <= _MAX_NUMERIC_DATE:
            raise _refuse(f"claim {name!r} must be an integer instant", "malformed")
    return payload
