"""Webhooks: Standard Webhooks v1 signing (pure) and the handler that sends them.

Signing follows the Standard Webhooks specification: the signature is
``v1,`` + base64(HMAC-SHA256(secret, ``{id}.{timestamp}.{body}``)) over the exact
bytes sent, in the headers ``webhook-id``, ``webhook-timestamp`` and
``webhook-signature``; secrets are ``whsec_`` + base64 of 24-64 random bytes.

:class:`WebhookHandler` is an action handler for service mode: it announces a
link's use to the application's URL, and any answer but a 2xx is a failure (the
use is released so the person can try again).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import httpx

from actionlinks.clock import format_instant
from actionlinks.errors import ConfigurationError, WebhookDeliveryError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from actionlinks.clock import Clock
    from actionlinks.tokens import ActionClaims

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def generate_secret() -> str:
    """A new ``whsec_`` secret of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    """The key inside a ``whsec_`` secret.

    Raises:
        ConfigurationError: not ``whsec_`` + base64 of at least 24 bytes.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigurationError("webhook secrets start with 'whsec_'")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError("a webhook secret is not valid base64") from exc
    if len(key) < 24:
        raise ConfigurationError("a webhook secret needs at least 24 random bytes")
    return key


def sign(key: bytes, *, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for ``body`` (one ``v1,`` signature)."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.digest(key, signed, hashlib.sha256)
    return "v1," + base64.b64encode(digest).decode()


def signature_headers(
    key: bytes, *, message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body``."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(
            key, message_id=message_id, timestamp=timestamp, body=body
        ),
    }


def new_message_id() -> str:
    """A fresh message id (``msg_`` + 128 random bits)."""
    return "msg_" + secrets.token_urlsafe(16)


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


async def check_destination(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s), or that resolve to private addresses.

    Raises:
        ConfigurationError: a bad scheme or host, or a private, loopback or
            link-local address while ``allow_private`` is false.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError("a webhook URL must be http(s)://host/…")
    if allow_private:
        return
    try:
        found = await anyio.getaddrinfo(parts.hostname, parts.port or 443)
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError("the webhook host does not resolve") from exc
    addresses = {str(info[4][0]) for info in found if info[0] in _FAMILIES}
    if not addresses or not all(_is_public(a) for a in addresses):
        raise ConfigurationError(
            "the webhook URL resolves to a private address; set "
            "ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE=1 to allow it"
        )


_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class WebhookHandler:
    """Announces events of an action to the application's URL, signed.

    Args:
        url: where to POST.
        secret: the endpoint's ``whsec_`` secret.
        client: the HTTP client (the caller owns and closes it).
        clock: stamps ``webhook-timestamp``.
        allow_private: whether private and loopback destinations are allowed.

    Raises:
        ConfigurationError: a malformed secret or URL.
    """

    __slots__ = ("_allow_private", "_client", "_clock", "_key", "_shown", "url")

    def __init__(
        self,
        url: str,
        *,
        secret: str,
        client: httpx.AsyncClient,
        clock: Clock,
        allow_private: bool = False,
    ) -> None:
        """Check the secret and URL shape."""
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigurationError("a handler URL must be http(s)")
        self.url = url
        parts = urlsplit(url)
        # Messages and reprs never show a query or credentials: they may hold secrets.
        self._shown = f"{parts.scheme}://{parts.hostname}{parts.path}"
        self._key = secret_bytes(secret)
        self._client = client
        self._clock = clock
        self._allow_private = allow_private

    def __repr__(self) -> str:
        """Show where it posts, never the secret or the URL's query."""
        return f"WebhookHandler({self._shown!r})"

    async def __call__(self, claims: ActionClaims, form: Mapping[str, str]) -> int:
        """Announce that a link was used; the receiver's 2xx status code.

        Raises:
            WebhookDeliveryError: no 2xx answer.
            ConfigurationError: the destination is not allowed.
        """
        return await self.send(
            "link.used",
            {
                "action": claims.action,
                "sub": claims.subject,
                "jti": claims.token_id,
                "issued_at": format_instant(claims.issued_at),
                "expires_at": format_instant(claims.expires_at),
                "data": claims.data,
                "form": dict(form),
            },
        )

    async def send(self, event: str, data: Mapping[str, Any]) -> int:
        """POST one signed event; the receiver's 2xx status code.

        Raises:
            WebhookDeliveryError: no 2xx answer.
            ConfigurationError: the destination is not allowed.
        """
        await check_destination(self.url, allow_private=self._allow_private)
        now = self._clock.now()
        body = json.dumps(
            {"type": event, "timestamp": format_instant(now), "data": dict(data)},
            separators=(",", ":"),
        ).encode()
        headers = signature_headers(
            self._key,
            message_id=new_message_id(),
            timestamp=int(now.timestamp()),
            body=body,
        )
        headers["content-type"] = "application/json"
        try:
            response = await self._client.post(
                self.url,
                content=body,
                headers=headers,
                timeout=_TIMEOUT,
                follow_redirects=False,
            )
        except httpx.HTTPError as exc:
            raise WebhookDeliveryError(
                f"the handler at {self._shown} did not answer", status_code=None
            ) from exc
        if not response.is_success:
            raise WebhookDeliveryError(
                f"the handler at {self._shown} answered {response.status_code}",
                status_code=response.status_code,
            )
        return response.status_code
