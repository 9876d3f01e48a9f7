"""Strict compact-JWS encoding: canonical unpadded base64url and strict JSON.

Every failure is a :class:`~actionlinks.errors.MalformedTokenError`; nothing
from ``base64``, ``binascii`` or ``json`` escapes.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any, NoReturn

from actionlinks.errors import MalformedTokenError

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def b64url_encode(raw: bytes) -> str:
    """Unpadded base64url text of ``raw``."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_segment(segment: str) -> bytes:
    """The bytes of one segment, which must be canonical unpadded base64url.

    Raises:
        MalformedTokenError: padding, other characters, or set trailing bits.
    """
    if len(segment) % 4 == 1 or not _B64URL.fullmatch(segment):
        malformed("a segment is not unpadded base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if b64url_encode(raw) != segment:
        malformed("a segment is not canonical base64url")
    return raw


def malformed(message: str) -> NoReturn:
    """Raise :class:`MalformedTokenError` with ``message``."""
    raise MalformedTokenError(message)


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        malformed("duplicate JSON keys")
    return result


def _reject_constant(name: str) -> NoReturn:
    malformed(f"non-standard JSON constant {name[:16]}")


_STRICT_JSON = json.JSONDecoder(
    object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
)


def json_object(raw: bytes, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object: UTF-8, no duplicate keys, no NaN or Infinity.

    Raises:
        MalformedTokenError: anything else; ``what`` names the part in the message.
    """
    try:
        value = _STRICT_JSON.decode(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MalformedTokenError(f"the {what} is not UTF-8") from exc
    except (ValueError, RecursionError) as exc:
        raise MalformedTokenError(f"the {what} is not valid JSON") from exc
    if not isinstance(value, dict):
        malformed(f"the {what} is not a JSON object")
    return value
