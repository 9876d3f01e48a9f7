"""Standard Webhooks signing: pure functions over the exact bytes sent.

``v1``: base64 HMAC-SHA256 with a ``whsec_`` secret (base64 of 24-64 random
bytes). ``v1a``: base64 Ed25519 with a ``whsk_`` private key (base64 of its
32-byte seed); receivers verify with the ``whpk_`` public key. Both sign
``{id}.{timestamp}.{body}`` and travel in ``webhook-signature`` as
space-separated ``version,signature`` entries — one per key while a secret is
rotated — beside ``webhook-id`` and ``webhook-timestamp``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from actionlinks.errors import ConfigurationError
from actionlinks.mac import PrefixedMac

if TYPE_CHECKING:
    from collections.abc import Iterable

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix, not a secret
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"
_MIN_SECRET_BYTES = 24
_MAX_SECRET_BYTES = 64


def generate_secret() -> str:
    """A new ``whsec_`` secret of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _base64(text: str, prefix: str, what: str) -> bytes:
    if not text.startswith(prefix):
        raise ConfigurationError(f"{what} starts with {prefix!r}")
    try:
        return base64.b64decode(text.removeprefix(prefix), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigurationError(f"{what} is not valid base64") from exc


def secret_bytes(secret: str) -> bytes:
    """The key inside a ``whsec_`` secret.

    Raises:
        ConfigurationError: not ``whsec_`` + base64 of 24-64 bytes.
    """
    key = _base64(secret, SECRET_PREFIX, "a webhook secret")
    if not _MIN_SECRET_BYTES <= len(key) <= _MAX_SECRET_BYTES:
        raise ConfigurationError("a webhook secret holds 24-64 random bytes")
    return key


def generate_signing_key() -> tuple[str, str]:
    """A new Ed25519 pair for ``v1a``: ``(whsk_…, whpk_…)``."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes_raw()
    return (
        PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode(),
        PUBLIC_KEY_PREFIX + base64.b64encode(public).decode(),
    )


def _ed25519_bytes(text: str, prefix: str, what: str) -> bytes:
    raw = _base64(text, prefix, what)
    if len(raw) != 32:
        raise ConfigurationError(f"{what} holds 32 bytes")
    return raw


def private_key(text: str) -> Ed25519PrivateKey:
    """The Ed25519 key of a ``whsk_`` string (base64 of a 32-byte seed).

    Raises:
        ConfigurationError: anything else.
    """
    seed = _ed25519_bytes(text, PRIVATE_KEY_PREFIX, "a v1a signing key")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key(text: str) -> Ed25519PublicKey:
    """The Ed25519 key of a ``whpk_`` string (base64 of 32 bytes).

    Raises:
        ConfigurationError: anything else.
    """
    raw = _ed25519_bytes(text, PUBLIC_KEY_PREFIX, "a v1a public key")
    return Ed25519PublicKey.from_public_bytes(raw)


def signed_content(*, message_id: str, timestamp: int, body: bytes) -> bytes:
    """What every scheme signs: ``{id}.{timestamp}.{body}``, the exact bytes."""
    return b"%s.%d.%s" % (message_id.encode(), timestamp, body)


def sign(key: bytes, *, message_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1`` signature entry for ``body``."""
    content = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.digest(key, content, "sha256")
    return "v1," + binascii.b2a_base64(digest, newline=False).decode()


class V1Key:
    """A ``whsec_`` key made ready once: signing and checking cost one HMAC.

    Args:
        key: the key bytes (see :func:`secret_bytes`).
    """

    __slots__ = ("_mac",)

    def __init__(self, key: bytes) -> None:
        """Key the HMAC once."""
        self._mac = PrefixedMac(key)

    def __repr__(self) -> str:
        """Never the key."""
        return "V1Key(…)"

    def sign(self, *, message_id: str, timestamp: int, body: bytes) -> str:
        """The ``v1`` entry of ``body`` sent as ``message_id`` at ``timestamp``."""
        return self.sign_content(b"%s.%d.%s" % (message_id.encode(), timestamp, body))

    def sign_content(self, content: bytes) -> str:
        """The ``v1`` entry of ``content`` (see :func:`signed_content`)."""
        return "v1," + binascii.b2a_base64(
            self._mac.digest(content), newline=False
        ).decode("ascii")


def sign_v1a(
    key: Ed25519PrivateKey, *, message_id: str, timestamp: int, body: bytes
) -> str:
    """One ``v1a`` (Ed25519) signature entry for ``body``."""
    content = signed_content(message_id=message_id, timestamp=timestamp, body=body)
    return "v1a," + base64.b64encode(key.sign(content)).decode()


def signature_headers(
    keys: bytes | V1Key | Iterable[bytes | V1Key],
    *,
    message_id: str,
    timestamp: int,
    body: bytes,
    signing_keys: Iterable[Ed25519PrivateKey] = (),
) -> dict[str, str]:
    """The three Standard Webhooks headers, with one entry per key.

    Args:
        keys: the ``v1`` key, or every active one during a rotation (raw
            bytes, or a :class:`V1Key` made ready once).
        message_id: the ``webhook-id``.
        timestamp: the ``webhook-timestamp`` (seconds).
        body: the exact bytes sent.
        signing_keys: ``v1a`` keys to sign with as well.
    """
    content = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    prepared = [
        key if isinstance(key, V1Key) else V1Key(key)
        for key in ([keys] if isinstance(keys, bytes | V1Key) else keys)
    ]
    entries = [key.sign_content(content) for key in prepared]
    entries += [
        sign_v1a(k, message_id=message_id, timestamp=timestamp, body=body)
        for k in signing_keys
    ]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(entries),
    }


def new_message_id() -> str:
    """A fresh message id (``msg_`` + 128 random bits)."""
    return "msg_" + secrets.token_urlsafe(16)
