"""Reading posted forms: size-capped, urlencoded or multipart, never a file.

The body is read in chunks and refused past the cap whether or not it declared
a ``Content-Length``; text must be UTF-8; uploads are refused.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect

from actionlinks.errors import RequestError

if TYPE_CHECKING:
    from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 64
_TEXT_TYPES = frozenset(
    {b"text/plain", b"text/plain; charset=utf-8", b'text/plain; charset="utf-8"'}
)


def _refused(status: int, code: str) -> RequestError:
    return RequestError(f"the form was refused ({code})", status=status, code=code)


async def read_form(request: Request, *, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The posted urlencoded or multipart form, capped at ``limit`` bytes.

    Raises:
        RequestError: 413 too large, 415 another type, 400 malformed or with
            files.
    """
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _refused(413, "body_too_large")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _refused(413, "body_too_large")
            chunks.append(chunk)
    except ClientDisconnect as exc:  # gone, or a body the server could not frame
        raise _refused(400, "incomplete_body") from exc
    body = b"".join(chunks)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("", "application/x-www-form-urlencoded"):
        try:
            pairs = parse_qsl(
                body.decode("ascii"),
                keep_blank_values=True,
                max_num_fields=MAX_FIELDS,
                errors="strict",
            )
        except (UnicodeError, ValueError) as exc:
            raise _refused(400, "malformed_form") from exc
        return dict(pairs)
    if kind == "multipart/form-data":
        try:
            return _multipart(request.headers.get("content-type", ""), body)
        except UnicodeDecodeError as exc:
            raise _refused(400, "malformed_form") from exc
    raise _refused(415, "unsupported_media_type")


_BOUNDARY = re.compile(
    r';\s*boundary=(?:"([^"]{1,70})"|([^\s;"]{1,70}))', re.IGNORECASE
)
_NAME = re.compile(rb'^form-data\s*;\s*name="([^"\\]{1,256})"\s*$', re.IGNORECASE)
_MAX_PART_HEAD = 1024


def _multipart(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a multipart/form-data body (RFC 7578), read strictly.

    Linear in the body and without recursion: a ``--boundary`` delimited list
    of parts, each with one ``Content-Disposition: form-data; name="…"`` (no
    ``filename``, no RFC 2231 names), at most a ``Content-Type`` of UTF-8 text,
    no transfer encodings, and a UTF-8 value. Anything else is refused.
    """
    found = _BOUNDARY.search(content_type[:512])
    if found is None:
        raise _refused(400, "malformed_form")
    delimiter = b"--" + (found.group(1) or found.group(2)).encode("latin-1")
    if not body.startswith(delimiter + b"\r\n"):
        raise _refused(400, "malformed_form")
    pieces = body[len(delimiter) + 2 :].split(b"\r\n" + delimiter)
    last = pieces.pop()
    if not last.startswith(b"--") or len(pieces) > MAX_FIELDS:
        raise _refused(400, "malformed_form")
    result: dict[str, str] = {}
    for index, piece in enumerate(pieces):
        part = piece if index == 0 else piece.removeprefix(b"\r\n")
        if index and not piece.startswith(b"\r\n"):
            raise _refused(400, "malformed_form")
        name, value = _field(part)
        result[name] = value
    return result


def _field(part: bytes) -> tuple[str, str]:
    head, separator, value = part.partition(b"\r\n\r\n")
    if not separator or len(head) > _MAX_PART_HEAD:
        raise _refused(400, "malformed_form")
    name: str | None = None
    for line in head.split(b"\r\n"):
        key, colon, content = line.partition(b":")
        key, content = key.strip().lower(), content.strip()
        if not colon:
            raise _refused(400, "malformed_form")
        if key == b"content-disposition" and name is None:
            found = _NAME.match(content)
            if found is None:
                raise _refused(400, "malformed_form")
            name = found.group(1).decode("utf-8", "strict")
        elif key == b"content-type" and content.lower() in _TEXT_TYPES:
            continue
        else:
            raise _refused(400, "malformed_form")
    if name is None:
        raise _refused(400, "malformed_form")
    return name, value.decode("utf-8")
