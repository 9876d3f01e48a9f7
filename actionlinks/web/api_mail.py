"""The mail routes of the HTTP API: send an action's mail, follow it.

``mail:send`` sends (``POST /v1/emails``: the link is minted, the mail
rendered and stored, and the answer is 202 only once it is stored); ``mail:read``
or ``mail:send`` reads one mail's state and every attempt. Neither answer
carries the link: it goes to the inbox only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actionlinks.clock import format_instant
from actionlinks.mail.hub import MAIL_ID_PREFIX, headers_of
from actionlinks.web.api import (
    NO_STORE,
    ROUTE_PREFIX,
    invalid,
    parse_ttl,
    read_json,
    text_field,
)
from actionlinks.web.api_webhooks import PageQuery, attempt_json

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from actionlinks.mail.hub import MailHub
    from actionlinks.outbox.model import MessageRecord
    from actionlinks.tokens import ActionClaims

    ScopedEndpoint = Callable[[Request, ActionClaims], Awaitable[Response]]
    Guard = Callable[[ScopedEndpoint, str], Callable[[Request], Awaitable[Response]]]

_SEND_FIELDS = frozenset({"action", "to", "sub", "data", "ttl"})


def mail_json(record: MessageRecord, *, full: bool = True) -> dict[str, Any]:
    """A mail as the API shows it (never its body); every attempt when ``full``."""
    message = record.message
    delivery = record.deliveries[0] if record.deliveries else None
    body: dict[str, Any] = {
        "id": message.message_id,
        "action": message.kind,
        "jti": message.message_id.removeprefix(MAIL_ID_PREFIX),
        "to": None if delivery is None else delivery.destination,
        **headers_of(message),
        "state": record.state,
        "created_at": format_instant(message.created_at),
        "attempts": 0 if delivery is None else delivery.attempts,
        "next_attempt_at": (
            None
            if delivery is None or delivery.next_attempt_at is None
            else format_instant(delivery.next_attempt_at)
        ),
    }
    if full:
        body["history"] = (
            [] if delivery is None else [attempt_json(a) for a in delivery.history]
        )
    return body


class MailRoutes:
    """The ``/v1/emails`` routes of one service."""

    def __init__(self, hub: Callable[[], MailHub], *, guard: Guard) -> None:
        """Serve the hub; ``guard`` checks the caller's token and scope."""
        self._hub = hub
        self._guard = guard

    def routes(self) -> list[Route]:
        """The routes, named ``api.mail.…``."""
        return [
            Route(
                "/v1/emails",
                self._guard(self.send, "mail:send"),
                methods=["POST"],
                name=f"{ROUTE_PREFIX}mail.send",
            ),
            Route(
                "/v1/emails",
                self._guard(self.list_mails, "mail:read mail:send"),
                methods=["GET"],
                name=f"{ROUTE_PREFIX}mail.list",
            ),
            Route(
                "/v1/emails/{id}",
                self._guard(self.mail, "mail:read mail:send"),
                methods=["GET"],
                name=f"{ROUTE_PREFIX}mail.mail",
            ),
            Route(
                "/v1/emails/{id}/resend",
                self._guard(self.resend, "mail:send"),
                methods=["POST"],
                name=f"{ROUTE_PREFIX}mail.resend",
            ),
        ]

    async def send(self, request: Request, caller: ActionClaims) -> Response:
        """POST /v1/emails: mint the link, store its mail; 202 once stored."""
        body = await read_json(request)
        unknown = sorted(set(body) - _SEND_FIELDS)
        if unknown:
            raise invalid(unknown[0], f"unknown field '{unknown[0]}'")
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise invalid("data", "'data' must be a JSON object")
        record = await self._hub().send(
            text_field(body, "action", required=True) or "",
            to=text_field(body, "to", required=True) or "",
            subject=text_field(body, "sub", required=True) or "",
            data=data,
            ttl=parse_ttl(body.get("ttl")),
        )
        return JSONResponse(
            mail_json(record, full=False), status_code=202, headers=NO_STORE
        )

    async def mail(self, request: Request, caller: ActionClaims) -> Response:
        """GET /v1/emails/{id}: its state and every attempt."""
        record = await self._hub().message(request.path_params["id"])
        return JSONResponse(mail_json(record), headers=NO_STORE)

    async def list_mails(self, request: Request, caller: ActionClaims) -> Response:
        """GET /v1/emails?state=failed&limit=&before=: newest first."""
        page = PageQuery.of(request)
        found = await self._hub().messages(
            state=page.state, limit=page.limit, before=page.before
        )
        return page.answer("emails", found, lambda r: mail_json(r, full=False))

    async def resend(self, request: Request, caller: ActionClaims) -> Response:
        """POST /v1/emails/{id}/resend: send it again now, same bytes (202)."""
        record = await self._hub().resend(request.path_params["id"])
        return JSONResponse(
            mail_json(record, full=False), status_code=202, headers=NO_STORE
        )
