"""Reading posted forms: size-capped, urlencoded or multipart, never a file.

The body is read in chunks and refused past the cap whether or not it declared
a ``Content-Length``; text must be UTF-8; uploads are refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from starlette.formparsers import MultiPartException, MultiPartParser

from actionlinks.errors import RequestError

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from starlette.datastructures import Headers
    from starlette.requests import Request

MAX_FORM_BYTES = 64 * 1024


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
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _refused(413, "body_too_large")
        chunks.append(chunk)
    body = b"".join(chunks)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("", "application/x-www-form-urlencoded"):
        try:
            pairs = parse_qsl(
                body.decode("ascii"),
                keep_blank_values=True,
                max_num_fields=64,
                errors="strict",
            )
        except (UnicodeError, ValueError) as exc:
            raise _refused(400, "malformed_form") from exc
        return dict(pairs)
    if kind == "multipart/form-data":
        return await _multipart(request.headers, body)
    raise _refused(415, "unsupported_media_type")


async def _multipart(headers: Headers, body: bytes) -> dict[str, str]:
    async def stream() -> AsyncGenerator[bytes, None]:
        yield body
        yield b""

    parser = MultiPartParser(
        headers, stream(), max_files=0, max_fields=64, max_part_size=MAX_FORM_BYTES
    )
    try:
        form = await parser.parse()
    except (MultiPartException, ValueError, KeyError) as exc:
        raise _refused(400, "malformed_form") from exc
    result: dict[str, str] = {}
    for name, value in form.multi_items():
        if not isinstance(value, str):  # pragma: no cover - max_files=0 refuses
            raise _refused(400, "malformed_form")
        result[name] = value
    return result
