"""The baseline of bench/service.py: bare Starlette endpoints answering fixed bytes.

No verification, no database, no rendering per request: GET answers the
confirmation page of an e-mail-confirm link, rendered once at import with the
same template and headers as ``actionlinks serve`` sends; POST reads the form
and answers the rendered success page. So a cached rendering in actionlinks
gains nothing over this baseline: it has the bytes ready already.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actionlinks.web.app import TOKEN_PAGE_HEADERS
from actionlinks.web.pages import PageRenderer, text_for

_renderer = PageRenderer()
_TEXT = text_for("email-confirm")
# The size of a real token and nonce, so both sides send as many bytes.
_TOKEN = "t" * 330
CONFIRM_PAGE = _renderer.render_confirm(
    "email-confirm",
    {
        "static_url": "/static",
        "title": _TEXT.title,
        "prompt": _TEXT.prompt,
        "button": _TEXT.button,
        "fields": _TEXT.fields,
        "nonce": "n" * 70,
        "action_url": f"/a/{_TOKEN}",
        "expires_at": "2026-11-30 12:00 UTC",
        "problem": None,
    },
).encode()
DONE_PAGE = _renderer.render(
    "done", {"static_url": "/static", "title": _TEXT.title, "message": _TEXT.done}
).encode()


async def show(request: Request) -> Response:  # noqa: ARG001 - Starlette passes it
    return Response(CONFIRM_PAGE, media_type="text/html", headers=TOKEN_PAGE_HEADERS)


async def confirm(request: Request) -> Response:
    await request.form()
    return Response(DONE_PAGE, media_type="text/html", headers=TOKEN_PAGE_HEADERS)


app = Starlette(
    routes=[
        Route("/a/{token}", show, methods=["GET", "HEAD"]),
        Route("/a/{token}", confirm, methods=["POST"]),
    ]
)
