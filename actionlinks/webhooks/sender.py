"""Sending one signed webhook: Standard Webhooks headers over the exact body.

:class:`WebhookEndpoint` is a destination and its secret (validated, shown
without query or credentials); :class:`WebhookSender` makes one attempt at
one endpoint with the client it is given (:meth:`~WebhookSender.attempt`, for
the outbox's worker), or sends an event now and raises unless it was accepted
(:meth:`~WebhookSender.send`, for a person who waits).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import anyio
import httpx

from actionlinks.clock import format_instant
from actionlinks.errors import ConfigurationError, WebhookDeliveryError
from actionlinks.jws import b64url_encode
from actionlinks.outbox.model import RESPONSE_EXCERPT, Attempt, excerpt
from actionlinks.outbox.schedule import parse_retry_after
from actionlinks.outbox.worker import AttemptResult
from actionlinks.webhooks.guard import check_url, is_refused_destination
from actionlinks.webhooks.signing import V1Key, secret_bytes, signature_headers

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from datetime import datetime

    from actionlinks.clock import Clock

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
GONE = 410
ATTEMPT_LIMIT = timedelta(seconds=15)
"""The longest one attempt may take, however slowly the receiver answers."""
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_RESERVED = frozenset(
    {
        "accept-encoding",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "host",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "webhook-id",
        "webhook-signature",
        "webhook-timestamp",
    }
)
"""Headers the JWT may not be carried in: the signature's own and HTTP's."""


class JwtSigner(Protocol):
    """Makes the JWT header of one delivery (see :mod:`actionlinks.webhooks.jwt`)."""

    def __call__(self, *, audience: str, message_id: str, body: bytes) -> str | None:
        """The JWT for ``body`` sent to ``audience`` as ``message_id``, if any."""
        ...


class WebhookEndpoint:
    """A webhook destination and the key that signs for it.

    Args:
        url: where to POST (https, or http to localhost).
        secret: the endpoint's ``whsec_`` secret, or every secret that signs
            during a rotation (newest first).
        jwt_header: the header that carries the JWT (``authorization``, as
            ``Bearer <jwt>``, by default); ``None`` sends none.

    Raises:
        ConfigurationError: a malformed URL, secret or header name.
    """

    __slots__ = ("_key", "_v1", "jwt_header", "shown", "url")

    def __init__(
        self,
        url: str,
        *,
        secret: str | Sequence[str],
        jwt_header: str | None = "authorization",
    ) -> None:
        """Check the URL, the secret and the header name."""
        self.url = check_url(url, what="a webhook URL")
        if jwt_header is not None and (
            not _HEADER_NAME.fullmatch(jwt_header)
            or jwt_header.lower() in _RESERVED
            or jwt_header.lower().startswith(("webhook-", "svix-"))
        ):
            raise ConfigurationError(
                "jwt_header must be an HTTP header name, not one that HTTP or the "
                "signature uses"
            )
        self.jwt_header = None if jwt_header is None else jwt_header.lower()
        parts = urlsplit(url)
        # Messages and reprs never show a query or credentials: they may hold secrets.
        host = parts.netloc.rpartition("@")[2]
        self.shown = f"{parts.scheme}://{host}{parts.path}"
        keys = [
            secret_bytes(s) for s in ([secret] if isinstance(secret, str) else secret)
        ]
        if not keys:
            raise ConfigurationError("a webhook endpoint needs a secret")
        self._key = keys[0]
        self._v1 = [V1Key(key) for key in keys]

    def __repr__(self) -> str:
        """Show where it posts, never the secret or the URL's query."""
        return f"WebhookEndpoint({self.shown!r})"

    def message_id(self, event_type: str, about: str, content: bytes = b"") -> str:
        """The one id of an event about ``about`` (a jti) with ``content``.

        The same on every attempt of the same event, so a receiver that did the
        work but answered late recognises the retry; keyed, so the id says
        nothing about the content (a password) to whoever sees it.
        """
        message = b"\0".join((event_type.encode(), about.encode(), content))
        digest = hmac.digest(self._key, message, hashlib.sha256)
        return "msg_" + b64url_encode(digest[:16])

    def headers(
        self, *, message_id: str, timestamp: int, body: bytes
    ) -> dict[str, str]:
        """The signature headers of one attempt."""
        return signature_headers(
            self._v1, message_id=message_id, timestamp=timestamp, body=body
        )


def failure_of(exc: httpx.HTTPError) -> str:
    """What went wrong without an answer, for people (no URL, no query)."""
    if is_refused_destination(exc):
        return (
            "is not a public address; allow it with webhook_allow_private = true "
            "in actionlinks.toml or ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE=1"
        )
    if isinstance(exc, httpx.ConnectTimeout):
        return "did not accept a connection in time"
    if isinstance(exc, httpx.TimeoutException):
        return "did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        cause = str(exc)[:120] or "connection failed"
        return f"could not be reached: {cause}"
    return "did not answer"


def event_body(event_type: str, data: Mapping[str, Any], *, at: datetime) -> bytes:
    """The body of an event: ``{"type", "timestamp", "data"}``, compact JSON."""
    return json.dumps(
        {"type": event_type, "timestamp": format_instant(at), "data": dict(data)},
        separators=(",", ":"),
    ).encode()


class WebhookSender:
    """Posts signed events with an HTTP client it does not own.

    Args:
        client: the HTTP client (its owner closes it).
        clock: stamps each attempt.
        jwt: makes the JWT header of each delivery (none without it).
    """

    __slots__ = ("_client", "_clock", "_jwt")

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Clock,
        jwt: JwtSigner | None = None,
    ) -> None:
        """Use ``client``."""
        self._client = client
        self._clock = clock
        self._jwt = jwt

    def __repr__(self) -> str:
        """Name the sender."""
        return "WebhookSender()"

    async def send(
        self,
        endpoint: WebhookEndpoint,
        *,
        event_type: str,
        message_id: str,
        data: Mapping[str, Any],
    ) -> int:
        """POST one signed event now; the receiver's 2xx status code.

        Raises:
            WebhookDeliveryError: no 2xx answer, no answer, or a destination
                that is not a public address (``status_code`` is ``None``).
        """
        body = event_body(event_type, data, at=self._clock.now())
        result = await self.attempt(endpoint, message_id=message_id, body=body)
        status = result.attempt.status
        if result.outcome != "delivered" or status is None:
            reason = result.attempt.error or f"answered {status}"
            raise WebhookDeliveryError(
                f"the webhook receiver at {endpoint.shown} {reason}",
                status_code=status,
            )
        return status

    def _headers(
        self, endpoint: WebhookEndpoint, *, message_id: str, body: bytes, now: datetime
    ) -> dict[str, str]:
        headers = endpoint.headers(
            message_id=message_id, timestamp=int(now.timestamp()), body=body
        )
        headers["content-type"] = "application/json"
        headers["accept-encoding"] = "identity"  # nothing to inflate
        carrier = endpoint.jwt_header
        if self._jwt is not None and carrier is not None:
            token = self._jwt(audience=endpoint.url, message_id=message_id, body=body)
            if token is not None:
                bearer = carrier == "authorization"
                headers[carrier] = f"Bearer {token}" if bearer else token
        return headers

    async def attempt(
        self, endpoint: WebhookEndpoint, *, message_id: str, body: bytes
    ) -> AttemptResult:
        """POST ``body`` once, signed now; what came of it (never raises for it).

        Any 2xx is delivered (even if the answer's body then stalls); 410
        Gone and a URL that cannot be sent to are ``failed``; anything else is
        ``retry`` (with the receiver's ``Retry-After``), a refused non-public
        destination included: its name may resolve elsewhere later. No
        redirect is followed. At most ``RESPONSE_EXCERPT`` characters of the
        answer are read.
        """
        now = self._clock.now()
        headers = self._headers(endpoint, message_id=message_id, body=body, now=now)
        started = anyio.current_time()
        status: int | None = None
        answer = b""
        retry_after = None
        error = None
        unusable = False
        with anyio.move_on_after(ATTEMPT_LIMIT.total_seconds()) as limit:
            try:
                async with self._client.stream(
                    "POST",
                    endpoint.url,
                    content=body,
                    headers=headers,
                    timeout=TIMEOUT,
                    follow_redirects=False,
                ) as response:
                    status = response.status_code
                    retry_after = parse_retry_after(
                        response.headers.get("retry-after"), now=now
                    )
                    if response.is_stream_consumed:  # read by the transport
                        answer = response.content[:RESPONSE_EXCERPT]  # (a test's)
                    else:  # raw bytes: a compressed answer is never inflated
                        async for chunk in response.aiter_raw():
                            answer += chunk
                            if len(answer) >= RESPONSE_EXCERPT:
                                break
            except (httpx.InvalidURL, ValueError):  # cannot be sent as it is
                error, unusable = "has a URL that cannot be used", True
            except httpx.HTTPError as exc:
                error = failure_of(exc)
        if limit.cancelled_caught and error is None:
            error = f"did not answer within {ATTEMPT_LIMIT.total_seconds():.0f} s"
        attempt = Attempt(
            at=now,
            latency=timedelta(seconds=anyio.current_time() - started),
            status=status,
            response=excerpt(answer.decode("utf-8", "replace")),
            error=error,
        )
        if status is not None and 200 <= status < 300:  # accepted, whatever followed
            return AttemptResult(attempt=attempt, outcome="delivered")
        if status == GONE or unusable:
            return AttemptResult(attempt=attempt, outcome="failed")
        return AttemptResult(attempt=attempt, outcome="retry", retry_after=retry_after)
