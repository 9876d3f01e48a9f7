"""Verifying inbound webhooks: Standard Webhooks ``v1``/``v1a`` and the JWT header.

:class:`WebhookVerifier` takes the raw headers and the exact body bytes (never
re-serialised JSON) and passes a webhook when any one signature of a configured
scheme is valid: unknown versions are skipped, a malformed entry never stops a
later valid one, the body need not be UTF-8. ``webhook-*`` and ``svix-*``
headers are both read. Timestamps must lie within the tolerance (5 minutes by
default, both ways). Every refusal is one :class:`WebhookVerificationError`
whose ``reason`` is for the log only.

Replays are refused by message id with a :class:`ReplayGuard`: a bounded
memory (:class:`MemoryReplayGuard`) or the service's ledger
(:class:`LedgerReplayGuard`, shared by every process).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

from cryptography.exceptions import InvalidSignature

from actionlinks.clock import SystemClock
from actionlinks.errors import ConfigurationError, WebhookVerificationError
from actionlinks.keys import PublicKeySet
from actionlinks.ledger import Hold
from actionlinks.webhooks.jwt import verify_webhook_jwt
from actionlinks.webhooks.received import ReceivedWebhook, Scheme
from actionlinks.webhooks.signing import (
    V1Key,
    public_key,
    secret_bytes,
    signed_content,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from actionlinks.clock import Clock
    from actionlinks.ledger import Ledger

DEFAULT_TOLERANCE = timedelta(minutes=5)
MAX_SIGNATURE_HEADER = 8192
MAX_V1A_ENTRIES = 4
"""Ed25519 entries checked per message, at most (rotation needs two or three)."""
_PREFIXES = ("webhook-", "svix-")


def _refused(message: str, reason: str) -> WebhookVerificationError:
    return WebhookVerificationError(message, reason=reason)


def _lowered(headers: Mapping[str, str]) -> Mapping[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _signature_headers(
    headers: Mapping[str, str],
) -> tuple[str | None, str | None, str | None]:
    """``webhook-id``, ``-timestamp`` and ``-signature`` (or ``svix-*``)."""
    for attempt in (headers, None):
        source = attempt if attempt is not None else _lowered(headers)
        for prefix in _PREFIXES:
            message_id = source.get(prefix + "id")
            if message_id:
                return (
                    message_id,
                    source.get(prefix + "timestamp"),
                    source.get(prefix + "signature"),
                )
    return None, None, None


def _well_formed(
    message_id: str | None, stamp: str | None, signature: str | None
) -> tuple[str, int, str]:
    """The three headers, present and within bounds; the timestamp as seconds."""
    if not (message_id and stamp and signature):
        raise _refused("missing signature headers", "missing_headers")
    if len(signature) > MAX_SIGNATURE_HEADER or len(message_id) > 256:
        raise _refused("oversized signature headers", "malformed")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise _refused("the timestamp is not integer seconds", "malformed")
    return message_id, int(stamp), signature


class WebhookVerifier:
    """Verifies webhooks for one receiver.

    Args:
        secrets: ``whsec_`` secrets (``v1``); several during a rotation.
        public_keys: ``whpk_`` keys (``v1a``).
        jwks: the sender's JWK Set (``/.well-known/jwks.json``), for the JWT
            header; needs ``audience``.
        audience: this receiver's URL, exactly as the sender knows it.
        issuer: the expected ``iss`` of the JWT, if known.
        jwt_header: the header carrying the JWT (``Bearer`` optional).
        tolerance: how far a timestamp may be from now, both ways.
        clock: the source of time.

    Raises:
        ConfigurationError: no scheme configured, a malformed secret or key,
            or a JWK Set without an audience.
    """

    __slots__ = (
        "_audience",
        "_clock",
        "_issuer",
        "_jwks",
        "_jwt_header",
        "_public_keys",
        "_secrets",
        "_tolerance",
        "_window",
    )

    def __init__(  # noqa: PLR0913 - every scheme's material, keyword-only
        self,
        *,
        secrets: str | Iterable[str] = (),
        public_keys: str | Iterable[str] = (),
        jwks: Mapping[str, object] | PublicKeySet | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        jwt_header: str = "authorization",
        tolerance: timedelta = DEFAULT_TOLERANCE,
        clock: Clock | None = None,
    ) -> None:
        """Decode every secret and key now, so that a bad one fails at once."""
        self._secrets = [
            V1Key(secret_bytes(s))
            for s in ([secrets] if isinstance(secrets, str) else secrets)
        ]
        keys = [public_keys] if isinstance(public_keys, str) else public_keys
        self._public_keys: list[Ed25519PublicKey] = [public_key(k) for k in keys]
        self._jwks = (
            jwks
            if isinstance(jwks, PublicKeySet) or jwks is None
            else PublicKeySet.from_jwks(jwks)
        )
        if self._jwks is not None and not audience:
            raise ConfigurationError("verifying the JWT header needs the audience")
        if not (self._secrets or self._public_keys or self._jwks is not None):
            raise ConfigurationError("give a secret, a public key or a JWK Set")
        if timedelta(0) > tolerance or tolerance > timedelta(days=1):
            raise ConfigurationError("the tolerance must be 0 to 24 hours")
        self._audience = audience or ""
        self._issuer = issuer
        self._jwt_header = jwt_header.lower()
        self._tolerance = tolerance
        self._window = tolerance // timedelta(microseconds=1)
        self._clock: Clock = clock or SystemClock()

    def __repr__(self) -> str:
        """Say which schemes are configured, never a secret."""
        return (
            f"WebhookVerifier(v1={len(self._secrets)}, v1a={len(self._public_keys)}, "
            f"jwt={self._jwks is not None})"
        )

    @property
    def tolerance(self) -> timedelta:
        """How far a timestamp may be from now."""
        return self._tolerance

    def verify(self, headers: Mapping[str, str], body: bytes) -> ReceivedWebhook:
        """The webhook, if any one configured scheme vouches for it.

        Args:
            headers: the request's headers (any case).
            body: the exact body bytes.

        Raises:
            WebhookVerificationError: no configured scheme vouches for it.
        """
        found = _signature_headers(headers)
        failure: WebhookVerificationError | None = None
        if self._secrets or self._public_keys:
            try:
                return self._verify_signatures(found, body)
            except WebhookVerificationError as exc:
                failure = exc
        if self._jwks is not None:
            token = headers.get(self._jwt_header) or _lowered(headers).get(
                self._jwt_header
            )
            try:
                if token:
                    return self._verify_jwt(token, found[0], body)
            except WebhookVerificationError as exc:
                if failure is None or failure.reason == "missing_headers":
                    failure = exc
        raise failure or _refused("no signature headers", "missing_headers")

    def _verify_signatures(
        self, found: tuple[str | None, str | None, str | None], body: bytes
    ) -> ReceivedWebhook:
        message_id, timestamp, signature = _well_formed(*found)
        self._check_time(timestamp)
        try:
            content = signed_content(
                message_id=message_id, timestamp=timestamp, body=body
            )
        except UnicodeEncodeError as exc:  # a lone surrogate: not text at all
            raise _refused("the message id is not text", "malformed") from exc
        expected = [key.sign_content(content) for key in self._secrets]
        if signature.isascii() and " " not in signature:  # the usual: one entry
            for text in expected:
                if hmac.compare_digest(signature, text):
                    return ReceivedWebhook.signed_at(message_id, timestamp, "v1", body)
        asymmetric = 0
        # Each distinct entry once, and only a few Ed25519 checks: a header full
        # of v1a entries must not buy a stranger seconds of CPU.
        for entry in dict.fromkeys(signature.split(" ")):
            if entry.startswith("v1a,"):
                asymmetric += 1
                if asymmetric > MAX_V1A_ENTRIES:
                    continue
            scheme = self._matches(entry, content, expected)
            if scheme is not None:
                return ReceivedWebhook.signed_at(message_id, timestamp, scheme, body)
        raise _refused("no signature matches", "no_valid_signature")

    def _matches(
        self, entry: str, content: bytes, expected: list[str]
    ) -> Scheme | None:
        if entry.isascii():
            for text in expected:  # the exact text we would send: no decoding
                if hmac.compare_digest(entry, text):
                    return "v1"
        version, _, encoded = entry.partition(",")
        if version not in ("v1", "v1a"):
            return None  # another version, or a malformed entry: look further
        try:
            signature = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return None
        if version == "v1":
            wanted = [base64.b64decode(e[3:]) for e in expected]
            if any(hmac.compare_digest(signature, w) for w in wanted):
                return "v1"
            return None
        for public in self._public_keys:
            try:
                public.verify(signature, content)
            except InvalidSignature:
                continue
            return "v1a"
        return None

    def _check_time(self, timestamp: int) -> None:
        sent, now = timestamp * 1_000_000, self._clock.micros()
        if sent < now - self._window:
            raise _refused("the timestamp is too old", "stale")
        if sent > now + self._window:
            raise _refused("the timestamp is in the future", "future")

    def _verify_jwt(
        self, value: str, message_id: str | None, body: bytes
    ) -> ReceivedWebhook:
        scheme, _, rest = value.partition(" ")
        token = rest.strip() if scheme.lower() == "bearer" else value.strip()
        if self._jwks is None:  # pragma: no cover - checked by the caller
            raise _refused("no JWK Set", "no_valid_signature")
        claims = verify_webhook_jwt(
            token,
            keys=self._jwks,
            audience=self._audience,
            body=body,
            now=self._clock.now(),
            leeway=min(self._tolerance, timedelta(minutes=1)),
            issuer=self._issuer,
        )
        if message_id is not None and message_id != claims.message_id:
            raise _refused("the JWT is for another message", "no_valid_signature")
        self._check_time(int(claims.issued_at.timestamp()))
        return ReceivedWebhook(
            message_id=claims.message_id,
            timestamp=claims.issued_at,
            scheme="jwt",
            body=body,
        )


Seen: TypeAlias = Literal["handled", "in_progress"]
HANDLED: Seen = "handled"
IN_PROGRESS: Seen = "in_progress"


@dataclass(frozen=True, slots=True)
class Claim:
    """The right to handle one message, until it is done or forgotten."""

    token: str


class ReplayGuard(Protocol):
    """Remembers which message ids were handled, so that none is handled twice."""

    async def claim(self, message_id: str, *, until: datetime) -> Claim | Seen:
        """Take ``message_id`` for handling, or say it is handled or in progress.

        ``until``: how long a handled id is remembered.
        """
        ...

    async def keep(self, message_id: str, claim: Claim) -> None:
        """The handler still runs: keep the claim from lapsing."""
        ...

    async def done(self, message_id: str, claim: Claim) -> None:
        """The message was handled: remember it until the claim's deadline."""
        ...

    async def forget(self, message_id: str, claim: Claim) -> None:
        """Handling failed: the sender's retry may take it again."""
        ...


@dataclass(slots=True)
class _Entry:
    token: str
    until: datetime
    done: bool


class MemoryReplayGuard:
    """Message ids in this process's memory, at most ``limit`` (oldest go first).

    Args:
        limit: how many ids are remembered.
        clock: the source of time.
    """

    __slots__ = ("_clock", "_limit", "_seen")

    def __init__(self, *, limit: int = 100_000, clock: Clock | None = None) -> None:
        """Start empty."""
        if limit < 1:
            raise ConfigurationError("the replay memory needs room for one id")
        self._limit = limit
        self._clock: Clock = clock or SystemClock()
        self._seen: OrderedDict[str, _Entry] = OrderedDict()

    def __repr__(self) -> str:
        """Count the ids."""
        return f"MemoryReplayGuard(ids={len(self._seen)})"

    async def claim(self, message_id: str, *, until: datetime) -> Claim | Seen:
        """Take ``message_id`` unless it is being or was handled."""
        found = self._seen.get(message_id)
        if found is not None and not found.done:
            return IN_PROGRESS  # a process keeps no claim past its own life
        if found is not None and found.until > self._clock.now():
            return HANDLED
        claim = Claim(secrets.token_urlsafe(12))
        self._seen[message_id] = _Entry(token=claim.token, until=until, done=False)
        self._seen.move_to_end(message_id)
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return claim

    async def keep(self, message_id: str, claim: Claim) -> None:
        """Nothing lapses in memory."""

    async def done(self, message_id: str, claim: Claim) -> None:
        """Remember it as handled."""
        found = self._seen.get(message_id)
        if found is not None and found.token == claim.token:
            found.done = True

    async def forget(self, message_id: str, claim: Claim) -> None:
        """Forget a claim whose handling failed."""
        found = self._seen.get(message_id)
        if found is not None and found.token == claim.token:
            del self._seen[message_id]


class LedgerReplayGuard:
    """Message ids in the service's ledger, shared by every process.

    A claim is a hold, renewed while the handler runs: if the receiving process
    dies, the hold lapses and the sender's retry is handled.

    Args:
        ledger: the ledger (``service.ledger``).
        clock: the source of time.
        hold_for: how long a claim holds between renewals.
    """

    __slots__ = ("_clock", "_hold_for", "_ledger")

    def __init__(
        self,
        ledger: Ledger,
        *,
        clock: Clock | None = None,
        hold_for: timedelta = timedelta(minutes=5),
    ) -> None:
        """Use ``ledger``."""
        self._ledger = ledger
        self._clock: Clock = clock or SystemClock()
        self._hold_for = hold_for

    def __repr__(self) -> str:
        """Name the ledger."""
        return f"LedgerReplayGuard({self._ledger!r})"

    def _hold(self, token: str) -> Hold:
        return Hold(holder=token, until=self._clock.now() + self._hold_for)

    async def claim(self, message_id: str, *, until: datetime) -> Claim | Seen:
        """Take ``message_id`` in the ledger (atomic across processes)."""
        hold = self._hold(secrets.token_urlsafe(12))
        if await self._ledger.consume(_key(message_id), expires_at=until, hold=hold):
            return Claim(hold.holder)
        entry = await self._ledger.lookup(_key(message_id))
        return IN_PROGRESS if entry is not None and entry.state == "held" else HANDLED

    async def keep(self, message_id: str, claim: Claim) -> None:
        """Renew the hold."""
        await self._ledger.extend(_key(message_id), hold=self._hold(claim.token))

    async def done(self, message_id: str, claim: Claim) -> None:
        """Make the claim final."""
        await self._ledger.confirm(_key(message_id), holder=claim.token)

    async def forget(self, message_id: str, claim: Claim) -> None:
        """Release the claim."""
        await self._ledger.release(_key(message_id), holder=claim.token)


def _key(message_id: str) -> str:
    return f"webhook:{message_id}"
