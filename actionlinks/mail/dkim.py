"""DKIM signing of outgoing mail (RFC 6376; Ed25519 per RFC 8463), with dkimpy.

On when ``ACTIONLINKS_DKIM_SELECTOR``, ``_DOMAIN`` and ``_PRIVATE_KEY`` (a PEM
file: RSA, or Ed25519) are set; dkimpy comes with the ``dkim`` extra. A
message is signed once its headers are final, before it is stored, so every
attempt sends the same signed bytes. The signature covers From, To, Subject,
Date, Message-ID, Reply-To and the MIME headers, and the RFC 8058 list headers
where present.
"""

from __future__ import annotations

import base64
import email.parser
import importlib
import os
import stat
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from actionlinks.errors import ConfigurationError

if TYPE_CHECKING:
    from pathlib import Path

SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
)
"""The headers a signature covers, those present in the message."""
MAX_KEY_FILE = 64 * 1024
_PROBE = b"From: a@example.com\r\nSubject: probe\r\n\r\nprobe\r\n"


class DkimSigner:
    """Signs messages for ``domain`` with the key published under ``selector``.

    Raises:
        ConfigurationError: dkimpy is not installed, or the key file is
            missing, unreadable or neither RSA (2048 bits or more) nor Ed25519.
    """

    __slots__ = ("_algorithm", "_dkim", "_key", "domain", "selector")

    def __init__(self, *, selector: str, domain: str, key_path: Path) -> None:
        """Read the key; nothing else is needed to sign."""
        try:
            self._dkim: Any = importlib.import_module("dkim")
        except ImportError as exc:
            raise ConfigurationError(
                "DKIM signing needs dkimpy: pip install 'actionlinks[dkim]'"
            ) from exc
        self.selector = selector
        self.domain = domain
        self._key, self._algorithm = _read_key(key_path)
        self.sign(_PROBE)  # a key dkimpy cannot use fails at start, not per mail

    def __repr__(self) -> str:
        """Name the selector and domain, never the key."""
        return f"DkimSigner({self.selector!r}, {self.domain!r})"

    def sign(self, message: bytes) -> bytes:
        """``message`` with its ``DKIM-Signature`` header first.

        Raises:
            ConfigurationError: dkimpy could not sign (a key it refuses).
        """
        present = email.parser.BytesHeaderParser().parsebytes(message)
        headers = [name.encode() for name in SIGNED_HEADERS if name in present]
        try:
            signature: bytes = self._dkim.sign(
                message,
                self.selector.encode(),
                self.domain.encode(),
                self._key,
                canonicalize=(b"relaxed", b"relaxed"),
                signature_algorithm=self._algorithm,
                include_headers=headers,
            )
        except self._dkim.DKIMException as exc:  # PyNaCl missing is one too
            raise ConfigurationError(f"DKIM signing failed: {exc}") from exc
        return signature + message


def _read_key(path: Path) -> tuple[bytes, bytes]:
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            pem = handle.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read the DKIM key {path}: {exc.strerror}"
        ) from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"the DKIM key {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(mode):o}); run 'chmod 600 {path}'"
        )
    try:
        if len(pem) > MAX_KEY_FILE:
            raise ValueError("too large")  # noqa: TRY301 - one message for every fault
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"the DKIM key {path} is not an unencrypted PEM private key"
        ) from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        return base64.b64encode(raw), b"ed25519-sha256"
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size >= 2048:
        traditional = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        return traditional, b"rsa-sha256"
    raise ConfigurationError(
        f"the DKIM key {path} must be RSA of 2048 bits or more, or Ed25519"
    )
