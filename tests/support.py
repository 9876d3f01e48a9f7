"""Helpers for tests: forging tokens with chosen headers, payloads and keys."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actionlinks.keys import SigningKey


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(value: dict[str, Any] | list[Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64(raw)


def forge(
    header: dict[str, Any] | bytes,
    payload: dict[str, Any] | list[Any] | bytes,
    key: SigningKey | None,
) -> str:
    """A compact JWS with exactly these parts, signed by ``key`` (or unsigned)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = b"" if key is None else key.sign(signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload))
