"""Form nonces: a link's token id and the time, signed, in itsdangerous' format.

A confirmation form carries ``{token_id}.{time}.{mac}``: the time is base64url
of the big-endian seconds, the MAC base64url of HMAC-SHA256 over
``{token_id}.{time}`` with a secret derived from a key of the ring. The newest
key signs; every key verifies, so forms opened before a rotation still post.
The bytes are exactly those of ``itsdangerous.TimestampSigner`` (sha256, no key
derivation), so forms opened before an upgrade post too; built on
:class:`~actionlinks.mac.PrefixedMac`, a nonce costs a fifth of that.
"""

from __future__ import annotations

import binascii
import hmac
from typing import TYPE_CHECKING

from actionlinks.jws import b64url_bytes
from actionlinks.mac import PrefixedMac

if TYPE_CHECKING:
    from collections.abc import Sequence

    from actionlinks.clock import Clock
    from actionlinks.keys import KeyRing, SigningKey

_MICROS = 1_000_000
_MAX_STAMP_CHARS = 12  # base64url of 8 bytes
_MAX_NONCE_CHARS = 512


def _stamp(seconds: int) -> bytes:
    return b64url_bytes(seconds.to_bytes(max(1, (seconds.bit_length() + 7) // 8)))


def _seconds(stamp: bytes) -> int | None:
    if not 0 < len(stamp) <= _MAX_STAMP_CHARS or len(stamp) % 4 == 1:
        return None
    try:
        raw = binascii.a2b_base64(
            stamp.translate(bytes.maketrans(b"-_", b"+/")) + b"=" * (-len(stamp) % 4),
            strict_mode=True,
        )
    except binascii.Error:
        return None
    return int.from_bytes(raw)


def form_keys(ring: KeyRing) -> list[SigningKey]:
    """The ring's keys in the order form signers take them: newest last.

    The last signs. A key scheduled to sign later (``--activate-after``) comes
    first instead: until its time, hosts that have not loaded it yet must
    accept the forms this one hands out.
    """
    return sorted(ring, key=lambda key: not (key.is_active and key.signs_from))


class FormNonces:
    """Signs and checks the nonces of confirmation forms.

    Args:
        secrets: one secret per key of the ring, the signing one last.
        clock: the source of time.
        max_age: how long a nonce stays good, in seconds.
    """

    __slots__ = ("_clock", "_macs", "_max_age")

    def __init__(self, secrets: Sequence[bytes], *, clock: Clock, max_age: int) -> None:
        """Key one MAC per secret."""
        self._macs = tuple(PrefixedMac(secret) for secret in secrets)
        self._clock = clock
        self._max_age = max_age

    def __repr__(self) -> str:
        """Never show key material."""
        return f"FormNonces(keys={len(self._macs)}, max_age={self._max_age})"

    def sign(self, token_id: str) -> str:
        """The nonce of the form of link ``token_id``, made now."""
        body = b".".join((token_id.encode(), _stamp(self._clock.micros() // _MICROS)))
        return b".".join((body, b64url_bytes(self._macs[-1].digest(body)))).decode()

    def is_valid(self, nonce: str, token_id: str) -> bool:
        """Whether ``nonce`` was signed for ``token_id`` within ``max_age``."""
        if len(nonce) > _MAX_NONCE_CHARS:
            return False
        raw = nonce.encode("utf-8", "surrogatepass")
        body, _, signature = raw.rpartition(b".")
        value, _, stamp = body.rpartition(b".")
        if not any(
            hmac.compare_digest(b64url_bytes(mac.digest(body)), signature)
            for mac in reversed(self._macs)  # the signing key first: the usual case
        ):
            return False
        signed_at = _seconds(stamp)
        if signed_at is None or not hmac.compare_digest(value, token_id.encode()):
            return False
        age = self._clock.micros() // _MICROS - signed_at
        return 0 <= age <= self._max_age
