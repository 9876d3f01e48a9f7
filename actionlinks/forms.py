"""Reading posted forms: size-capped, urlencoded or multipart, never a file.

The body is read in chunks and refused past the cap whether or not it declared
a ``Content-Length``; text must be UTF-8; uploads are refused.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.requests import ClientDisconnect

from actionlinks.errors import RequestError

if TYPE_CHECKING:
    from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024
MAX_FIELDS = 64


def _refused(status: int, code: str) -> RequestError:
    return RequestError(f"the form was refused ({code})", status=status, code=code)


async def read_form(request: Request, *, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """The posted urlencoded or multipart form, capped at ``limit`` bytes.

    Raises:
        RequestError: 413 too large, 415 another type, 400 malformed or with
            files.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
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
        return _multipart(request.headers.get("content-type", ""), body)
    raise _refused(415, "unsupported_media_type")


def _multipart(content_type: str, body: bytes) -> dict[str, str]:
    """The fields of a multipart/form-data body: UTF-8 text only, no files.

    Parsed with the standard library's MIME parser, strictly: Starlette's would
    fall back to Latin-1 for text that is not UTF-8, and take a charset from the
    request.
    """
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise _refused(400, "malformed_form")
    result: dict[str, str] = {}
    for count, part in enumerate(message.iter_parts()):
        name = part.get_param("name", header="content-disposition")
        if (
            count >= MAX_FIELDS
            or part.get_content_disposition() != "form-data"
            or part.get_filename() is not None
            or not isinstance(name, str)
            or part.defects
        ):
            raise _refused(400, "malformed_form")
        payload = part.get_payload(decode=True)
        try:
            result[name] = bytes(payload).decode("utf-8")
        except (TypeError, UnicodeDecodeError) as exc:
            raise _refused(400, "malformed_form") from exc
    return result
