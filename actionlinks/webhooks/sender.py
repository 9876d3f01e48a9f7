"""Sending one signed webhook: Standard Webhooks headers over the exact body.

:class:`WebhookEndpoint` is a destination and its secret (validated, shown
without query or credentials); :class:`WebhookSender` posts one event to one
endpoint with the client it is given and answers with the receiver's 2xx
status, or raises. Durable delivery with retries is the outbox's job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import httpx

from actionlinks.clock import format_instant
from actionlinks.errors import ConfigurationError, WebhookDeliveryError
from actionlinks.jws import b64url_encode
from actionlinks.webhooks.guard import check_url, is_refused_destination
from actionlinks.webhooks.signing import V1Key, secret_bytes, signature_headers

if TYPE_CHECKING:
    from collections.abc import Mapping

    from actionlinks.clock import Clock

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
_HEADER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
_RESERVED = frozenset({"content-type", "content-length", "host"})


class JwtSigner(Protocol):
    """Makes the JWT header of one delivery (see :mod:`actionlinks.webhooks.jwt`)."""

    def __call__(self, *, audience: str, message_id: str, body: bytes) -> str | None:
        """The JWT for ``body`` sent to ``audience`` as ``message_id``, if any."""
        ...


class WebhookEndpoint:
    """A webhook destination and the key that signs for it.

    Args:
        url: where to POST (https, or http to localhost).
        secret: the endpoint's ``whsec_`` secret.
        jwt_header: the header that carries the JWT (``authorization``, as
            ``Bearer <jwt>``, by default); ``None`` sends none.

    Raises:
        ConfigurationError: a malformed URL, secret or header name.
    """

    __slots__ = ("_key", "_v1", "jwt_header", "shown", "url")

    def __init__(
        self, url: str, *, secret: str, jwt_header: str | None = "authorization"
    ) -> None:
        """Check the URL, the secret and the header name."""
        self.url = check_url(url, what="a webhook URL")
        if jwt_header is not None and not _HEADER_NAME.fullmatch(jwt_header):
            raise ConfigurationError("jwt_header must be an HTTP header name")
        self.jwt_header = None if jwt_header is None else jwt_header.lower()
        parts = urlsplit(url)
        # Messages and reprs never show a query or credentials: they may hold secrets.
        host = parts.netloc.rpartition("@")[2]
        self.shown = f"{parts.scheme}://{host}{parts.path}"
        self._key = secret_bytes(secret)
        self._v1 = V1Key(self._key)

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
        """POST one signed event; the receiver's 2xx status code.

        Raises:
            WebhookDeliveryError: no 2xx answer, no answer, or a destination
                that is not a public address (``status_code`` is ``None``).
        """
        now = self._clock.now()
        body = json.dumps(
            {"type": event_type, "timestamp": format_instant(now), "data": dict(data)},
            separators=(",", ":"),
        ).encode()
        headers = endpoint.headers(
            message_id=message_id, timestamp=int(now.timestamp()), body=body
        )
        headers["content-type"] = "application/json"
        carrier = endpoint.jwt_header
        if self._jwt is not None and carrier is not None and carrier not in _RESERVED:
            token = self._jwt(audience=endpoint.url, message_id=message_id, body=body)
            if token is not None:
                bearer = carrier == "authorization"
                headers[carrier] = f"Bearer {token}" if bearer else token
        try:
            response = await self._client.post(
                endpoint.url,
                content=body,
                headers=headers,
                timeout=TIMEOUT,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            reason = (
                "is not a public address; set ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE=1 "
                "to allow it"
                if is_refused_destination(exc)
                else "did not answer"
            )
            raise WebhookDeliveryError(
                f"the webhook receiver at {endpoint.shown} {reason}", status_code=None
            ) from exc
        if not response.is_success:
            raise WebhookDeliveryError(
                f"the webhook receiver at {endpoint.shown} answered "
                f"{response.status_code}",
                status_code=response.status_code,
            )
        return response.status_code
