"""Strict compact-JWS encoding: canonical unpadded base64url and strict JSON.

Every failure is a :class:`~actionlinks.errors.MalformedTokenError`; nothing
from ``base64``, ``binascii`` or ``json`` escapes.
"""

from __future__ import annotations

import binascii
import json
import re
from typing import Any, NoReturn

from actionlinks.errors import MalformedTokenError

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TO_URL = bytes.maketrans(b"+/", b"-_")
_FROM_URL = bytes.maketrans(b"-_", b"+/")
_PADDING = {0: b"", 2: b"==", 3: b"="}
# The last character of a segment of length 4n+2 (4n+3) carries 4 (2) unused
# bits, which must be zero: only these characters are canonical there.
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def b64url_encode(raw: bytes) -> str:
    """Unpadded base64url text of ``raw``."""
    encoded = binascii.b2a_base64(raw, newline=False).translate(_TO_URL)
    return encoded.rstrip(b"=").decode("ascii")


def decode_segment(segment: str) -> bytes:
    """The bytes of one segment, which must be canonical unpadded base64url.

    Raises:
        MalformedTokenError: padding, other characters, or set trailing bits.
    """
    remainder = len(segment) % 4
    if remainder == 1 or not _B64URL.fullmatch(segment):
        malformed("a segment is not unpadded base64url")
    if remainder and segment[-1] not in _CANONICAL_LAST[remainder]:
        malformed("a segment is not canonical base64url")
    data = segment.encode("ascii").translate(_FROM_URL) + _PADDING[remainder]
    return binascii.a2b_base64(data, strict_mode=True)


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
