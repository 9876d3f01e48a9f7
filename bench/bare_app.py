"""The baseline of bench/service.py: bare Starlette endpoints rendering the same pages.

No verification, no database: GET renders the confirmation page, POST parses the
form and renders the success page, with the same templates and headers.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from actionlinks.web.app import TOKEN_PAGE_HEADERS
from actionlinks.web.pages import PageRenderer, text_for

renderer = PageRenderer()
TEXT = text_for("email-confirm")


async def show(request: Request) -> Response:
    html = renderer.render_confirm(
        "email-confirm",
        {
            "static_url": "/static",
            "title": TEXT.title,
            "prompt": TEXT.prompt,
            "button": TEXT.button,
            "fields": TEXT.fields,
            "nonce": "x" * 70,
            "action_url": f"/a/{request.path_params['token']}",
            "expires_at": "2026-11-30 12:00 UTC",
            "problem": None,
        },
    )
    return HTMLResponse(html, headers=TOKEN_PAGE_HEADERS)


async def confirm(request: Request) -> Response:
    await request.form()
    html = renderer.render(
        "done", {"static_url": "/static", "title": TEXT.title, "message": TEXT.done}
    )
    return HTMLResponse(html, headers=TOKEN_PAGE_HEADERS)


app = Starlette(
    routes=[
        Route("/a/{token}", show, methods=["GET", "HEAD"]),
        Route("/a/{token}", confirm, methods=["POST"]),
    ]
)
