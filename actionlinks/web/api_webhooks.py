"""The webhook routes of the HTTP API: endpoints, messages, attempts, redelivery.

``webhooks:write`` registers, rotates and disables endpoints and sends
messages; ``webhooks:read`` lists them and shows every attempt. A message is
answered 202 only once it is stored with its deliveries. Secrets appear only
in the answers that create them (registration, rotation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actionlinks.clock import format_instant
from actionlinks.errors import ConfigurationError
from actionlinks.outbox.store import MAX_LISTED
from actionlinks.settings import parse_duration
from actionlinks.web.api import NO_STORE, ROUTE_PREFIX, invalid, read_json, text_field
from actionlinks.webhooks.hub import payload_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from actionlinks.outbox.model import Attempt, Delivery, MessageRecord, MessageState
    from actionlinks.tokens import ActionClaims
    from actionlinks.webhooks.endpoints import EndpointRecord
    from actionlinks.webhooks.hub import WebhookHub

    ScopedEndpoint = Callable[[Request, ActionClaims], Awaitable[Response]]
    Guard = Callable[[ScopedEndpoint, str], Callable[[Request], Awaitable[Response]]]

_STATES: dict[str, MessageState] = {
    "pending": "pending",
    "delivered": "delivered",
    "failed": "failed",
    "none": "none",
}
_LIMIT = re.compile(r"[1-9][0-9]{0,2}")
_ENDPOINT_FIELDS = frozenset({"url", "event_types", "jwt_header"})
_MESSAGE_FIELDS = frozenset({"event_type", "payload", "endpoint_id", "id"})


@dataclass(frozen=True, slots=True)
class PageQuery:
    """``?state=&limit=&before=`` of a listing of messages, checked."""

    state: MessageState | None
    limit: int
    before: str | None

    @classmethod
    def of(cls, request: Request) -> PageQuery:
        """The query of ``request``.

        Raises:
            RequestError: 422 on a state or limit out of range.
        """
        query = request.query_params
        state_text = query.get("state")
        state = None if state_text is None else _STATES.get(state_text)
        if state_text is not None and state is None:
            raise invalid("state", f"'state' is one of {', '.join(_STATES)}")
        limit_text = query.get("limit", str(MAX_LISTED))
        if not _LIMIT.fullmatch(limit_text) or int(limit_text) > MAX_LISTED:
            raise invalid("limit", f"'limit' is 1-{MAX_LISTED}")
        return cls(state, int(limit_text), query.get("before"))

    def answer(
        self,
        name: str,
        found: list[MessageRecord],
        shown: Callable[[MessageRecord], dict[str, Any]],
    ) -> JSONResponse:
        """The page as JSON: ``{name: [...], "next": <before of the next page>}``."""
        full = len(found) == self.limit
        return JSONResponse(
            {
                name: [shown(r) for r in found],
                "next": found[-1].message.message_id if full else None,
            },
            headers=NO_STORE,
        )


def endpoint_json(record: EndpointRecord, *, full: bool = False) -> dict[str, Any]:
    """An endpoint as the API shows it: never a secret.

    Its URL's query (which may hold one) only when it is registered (``full``).
    """
    return {
        "id": record.endpoint_id,
        "url": record.url if full else record.shown_url,
        "event_types": None if record.event_types is None else list(record.event_types),
        "jwt_header": record.jwt_header,
        "state": "enabled" if record.is_enabled else "disabled",
        "disabled_reason": record.disabled_reason,
        "created_at": format_instant(record.created_at),
    }


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    """One attempt as the API shows it."""
    return {
        "at": format_instant(attempt.at),
        "status": attempt.status,
        "latency_ms": round(attempt.latency.total_seconds() * 1000, 1),
        "response": attempt.response,
        "error": attempt.error,
    }


def delivery_json(delivery: Delivery, *, history: bool = True) -> dict[str, Any]:
    """One delivery as the API shows it, with every attempt (``history``)."""
    shown = {
        "endpoint_id": delivery.destination,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": (
            None
            if delivery.next_attempt_at is None
            else format_instant(delivery.next_attempt_at)
        ),
    }
    if history:
        shown["history"] = [attempt_json(a) for a in delivery.history]
    return shown


def message_json(record: MessageRecord, *, full: bool = True) -> dict[str, Any]:
    """A message as the API shows it; with its payload and every attempt (``full``)."""
    body: dict[str, Any] = {
        "id": record.message.message_id,
        "event_type": record.message.kind,
        "state": record.state,
        "created_at": format_instant(record.message.created_at),
        "deliveries": [delivery_json(d, history=full) for d in record.deliveries],
    }
    if full:
        body["payload"] = payload_of(record.message)
    return body


class WebhookRoutes:
    """The ``/v1/webhooks/`` routes of one service."""

    def __init__(self, hub: Callable[[], WebhookHub], *, guard: Guard) -> None:
        """Serve the hub; ``guard`` checks the caller's token and scope."""
        self._hub = hub
        self._guard = guard

    def routes(self) -> list[Route]:
        """The routes, named ``api.webhooks.…``."""
        write, read = "webhooks:write", "webhooks:read"
        table: list[tuple[str, ScopedEndpoint, str, str, str]] = [
            ("/v1/webhooks/endpoints", self.add_endpoint, "POST", write, "add"),
            ("/v1/webhooks/endpoints", self.list_endpoints, "GET", read, "list"),
            ("/v1/webhooks/endpoints/{id}", self.get_endpoint, "GET", read, "endpoint"),
            ("/v1/webhooks/endpoints/{id}", self.disable, "DELETE", write, "disable"),
            (
                "/v1/webhooks/endpoints/{id}/rotate",
                self.rotate,
                "POST",
                write,
                "rotate",
            ),
            (
                "/v1/webhooks/endpoints/{id}/enable",
                self.enable,
                "POST",
                write,
                "enable",
            ),
            ("/v1/webhooks/messages", self.send, "POST", write, "send"),
            ("/v1/webhooks/messages", self.list_messages, "GET", read, "messages"),
            ("/v1/webhooks/messages/{id}", self.message, "GET", read, "message"),
            (
                "/v1/webhooks/messages/{id}/redeliver",
                self.redeliver,
                "POST",
                write,
                "redeliver",
            ),
        ]
        return [
            Route(
                path,
                self._guard(endpoint, scope),
                methods=[method],
                name=f"{ROUTE_PREFIX}webhooks.{name}",
            )
            for path, endpoint, method, scope, name in table
        ]

    async def add_endpoint(self, request: Request, caller: ActionClaims) -> Response:
        """POST /v1/webhooks/endpoints: 201 with the id and the new secret."""
        body = await read_json(request)
        _no_unknown(body, _ENDPOINT_FIELDS)
        url = text_field(body, "url", required=True) or ""
        types = body.get("event_types")
        if types is not None and not isinstance(types, list):
            raise invalid("event_types", "'event_types' must be a list of strings")
        header: Any = body.get("jwt_header", "authorization")
        if header is not None and not isinstance(header, str):
            raise invalid("jwt_header", "'jwt_header' must be a header name or null")
        record, secret = await self._hub().add_endpoint(
            url, event_types=types, jwt_header=header
        )
        answer = endpoint_json(record, full=True)
        answer["secret"] = secret
        return JSONResponse(answer, status_code=201, headers=NO_STORE)

    async def list_endpoints(self, request: Request, caller: ActionClaims) -> Response:
        """GET /v1/webhooks/endpoints: every endpoint, oldest first."""
        found = await self._hub().endpoints()
        return JSONResponse(
            {"endpoints": [endpoint_json(e) for e in found]}, headers=NO_STORE
        )

    async def get_endpoint(self, request: Request, caller: ActionClaims) -> Response:
        """GET /v1/webhooks/endpoints/{id}: one endpoint (never its secret)."""
        record = await self._hub().endpoint(request.path_params["id"])
        return JSONResponse(endpoint_json(record), headers=NO_STORE)

    async def rotate(self, request: Request, caller: ActionClaims) -> Response:
        """POST …/{id}/rotate: a new secret; the old ones sign for the overlap."""
        body = await read_json(request) if _has_body(request) else {}
        _no_unknown(body, frozenset({"overlap"}))
        overlap = body.get("overlap")
        kwargs = {}
        if overlap is not None:
            if not isinstance(overlap, str):
                raise invalid("overlap", "'overlap' is a duration like 24h")
            try:
                kwargs["overlap"] = parse_duration(overlap)
            except ConfigurationError as exc:
                raise invalid("overlap", str(exc)) from exc
        record, secret = await self._hub().rotate(request.path_params["id"], **kwargs)
        answer = endpoint_json(record)
        answer["secret"] = secret
        answer["previous_secrets_until"] = [
            format_instant(s.until) for s in record.secrets if s.until is not None
        ]
        return JSONResponse(answer, headers=NO_STORE)

    async def disable(self, request: Request, caller: ActionClaims) -> Response:
        """DELETE /v1/webhooks/endpoints/{id}: disable it; pending messages fail."""
        record = await self._hub().disable(request.path_params["id"])
        return JSONResponse(endpoint_json(record), headers=NO_STORE)

    async def enable(self, request: Request, caller: ActionClaims) -> Response:
        """POST …/{id}/enable: receive new messages again."""
        record = await self._hub().enable(request.path_params["id"])
        return JSONResponse(endpoint_json(record), headers=NO_STORE)

    async def send(self, request: Request, caller: ActionClaims) -> Response:
        """POST /v1/webhooks/messages: 202 once stored, with its deliveries."""
        body = await read_json(request)
        _no_unknown(body, _MESSAGE_FIELDS)
        event_type = text_field(body, "event_type", required=True) or ""
        payload = body.get("payload")
        if not isinstance(payload, dict):
            raise invalid("payload", "'payload' must be a JSON object")
        record = await self._hub().send(
            event_type,
            payload,
            endpoint_id=text_field(body, "endpoint_id", required=False),
            message_id=text_field(body, "id", required=False),
        )
        return JSONResponse(
            message_json(record, full=False), status_code=202, headers=NO_STORE
        )

    async def list_messages(self, request: Request, caller: ActionClaims) -> Response:
        """GET /v1/webhooks/messages?state=failed&limit=&before=: newest first."""
        page = PageQuery.of(request)
        found = await self._hub().messages(
            state=page.state, limit=page.limit, before=page.before
        )
        return page.answer("messages", found, lambda r: message_json(r, full=False))

    async def message(self, request: Request, caller: ActionClaims) -> Response:
        """GET /v1/webhooks/messages/{id}: state, payload and every attempt."""
        record = await self._hub().message(request.path_params["id"])
        return JSONResponse(message_json(record), headers=NO_STORE)

    async def redeliver(self, request: Request, caller: ActionClaims) -> Response:
        """POST …/{id}/redeliver: deliver again now, same id (202)."""
        body = await read_json(request) if _has_body(request) else {}
        _no_unknown(body, frozenset({"endpoint_id"}))
        record = await self._hub().redeliver(
            request.path_params["id"],
            endpoint_id=text_field(body, "endpoint_id", required=False),
        )
        return JSONResponse(
            message_json(record, full=False), status_code=202, headers=NO_STORE
        )


def _has_body(request: Request) -> bool:
    length = request.headers.get("content-length", "0")
    return length != "0" or "transfer-encoding" in request.headers


def _no_unknown(body: dict[str, Any], known: frozenset[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise invalid(unknown[0], f"unknown field '{unknown[0]}'")
