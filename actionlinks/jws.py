"""Strict compact-JWS encoding: canonical unpadded base64url and strict JSON.

Every failure is a :class:`~actionlinks.errors.MalformedTokenError`; nothing
from ``base64``, ``binascii`` or ``json`` escapes.
"""

from __future__ import annotations

import binascii
import json
import re
from json.encoder import JSONEncoder, encode_basestring_ascii
from json.scanner import make_scanner
from typing import TYPE_CHECKING, Any, NoReturn, cast

from actionlinks.errors import MalformedTokenError

if TYPE_CHECKING:
    from collections.abc import Callable

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_TO_URL = bytes.maketrans(b"+/", b"-_")
_FROM_URL = bytes.maketrans(b"-_", b"+/")
_PADDING = {0: b"", 2: b"==", 3: b"="}
# The last character of a segment of length 4n+2 (4n+3) carries 4 (2) unused
# bits, which must be zero: only these characters are canonical there.
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
_CANONICAL_LAST_BYTES = {
    remainder: frozenset(map(ord, last)) for remainder, last in _CANONICAL_LAST.items()
}
_URL_DELETE = b"+/="  # characters of the other alphabet, and padding


def b64url_encode(raw: bytes) -> str:
    """Unpadded base64url text of ``raw``."""
    encoded = binascii.b2a_base64(raw, newline=False).translate(_TO_URL)
    return encoded.rstrip(b"=").decode("ascii")


def b64url_bytes(raw: bytes) -> bytes:
    """Unpadded base64url bytes of ``raw``."""
    return binascii.b2a_base64(raw, newline=False).translate(_TO_URL).rstrip(b"=")


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


# The strict decoder's own scanner (the C one), called without its wrapper.
_SCAN = cast(
    "Callable[[str, int], tuple[Any, int]]", make_scanner(cast("Any", _STRICT_JSON))
)
# The C encoder json.dumps uses, built once rather than per call.
_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_ENCODE = (
    _MAKE_ENCODER(
        None,  # no cycle check: only fresh dicts of JSON values are encoded
        JSONEncoder().default,
        encode_basestring_ascii,
        None,
        ":",
        ",",
        False,  # noqa: FBT003 - sort_keys, positional in the C encoder
        False,  # noqa: FBT003 - skipkeys
        True,  # noqa: FBT003 - allow_nan, as json.dumps
    )
    if _MAKE_ENCODER is not None
    else None
)
_COMPACT = JSONEncoder(separators=(",", ":"))


def compact_json(value: dict[str, Any]) -> str:
    """``json.dumps(value, separators=(",", ":"))``, without building an encoder."""
    if _ENCODE is None:  # pragma: no cover - CPython always has the C encoder
        return _COMPACT.encode(value)
    return "".join(_ENCODE(value, 0))


def segment_object(segment: bytes) -> dict[str, Any] | None:
    """The JSON object in a canonical base64url segment, or ``None``.

    The quick form of :func:`decode_segment` then :func:`json_object`: it
    accepts exactly what they accept without surrounding whitespace, and says
    ``None`` instead of why; callers fall back to those for the error.
    """
    remainder = len(segment) & 3
    if remainder == 1 or (
        remainder and segment[-1] not in _CANONICAL_LAST_BYTES[remainder]
    ):
        return None
    standard = segment.translate(_FROM_URL, _URL_DELETE)
    if len(standard) != len(segment):
        return None
    try:
        text = binascii.a2b_base64(
            standard + _PADDING[remainder], strict_mode=True
        ).decode("utf-8")
        value, end = _SCAN(text, 0)
    except (ValueError, StopIteration, RecursionError, MalformedTokenError):
        return None  # binascii.Error and UnicodeDecodeError are ValueErrors
    if end != len(text) or type(value) is not dict:
        return None
    return value
