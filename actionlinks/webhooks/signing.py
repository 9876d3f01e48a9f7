"""Standard Webhooks v1 signing: pure functions over the exact bytes sent.

The signature is ``v1,`` + base64(HMAC-SHA256(secret, ``{id}.{timestamp}.{body}``))
in the headers ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``;
secrets are ``whsec_`` + base64 of 24-64 random bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from actionlinks.errors import ConfigurationError

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
_MIN_SECRET_BYTES = 24
_MAX_SECRET_BYTES = 64


def generate_secret() -> str:
    """A new ``whsec_`` secret of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    """The key inside a ``whsec_`` secret.

    Raises:
        ConfigurationError: not ``whsec_`` + base64 of 24-64 bytes.
    """
    if not secret.startswith(SECRET_PREFIX):
        raise ConfigurationError("webhook secrets start with 'whsec_'")
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError("a webhook secret is not valid base64") from exc
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise ConfigurationError("a webhook secret holds 24-64 random bytes")
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
