"""The HTTP API under ``/v1/``: JSON, Bearer access tokens with scopes.

Errors are JSON with a stable ``error`` code: 401 (with ``WWW-Authenticate:
Bearer``) for a missing or invalid token, 403 for a missing scope, 413 for a
body over 64 KiB, 415 for a body that is not JSON, 422 (naming the ``field``) for
a malformed one, 503 when the database is unavailable. Endpoints raise; the
app's one exception handler calls :func:`api_error`.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from actionlinks.clock import format_instant
from actionlinks.errors import (
    ActionLinksError,
    ConfigurationError,
    ConflictError,
    InvalidArgumentError,
    LedgerUnavailableError,
    NotFoundError,
    RequestError,
    TokenError,
)
from actionlinks.keys import ALGORITHMS, parse_algorithm
from actionlinks.links import status_json
from actionlinks.settings import MAX_DURATION, parse_duration

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from actionlinks.service import Service
    from actionlinks.tokens import ActionClaims
    from actionlinks.web.metrics import Metrics

    ScopedEndpoint = Callable[[Request, ActionClaims], Awaitable[Response]]

MAX_BODY_BYTES = 64 * 1024
MAX_DEPTH = 32
"""How deeply a request's JSON may nest."""
ROUTE_PREFIX = "api."
_REALM = 'Bearer realm="actionlinks"'
NO_STORE = {"Cache-Control": "no-store"}
MAX_JTI = 256
"""The longest jti looked up (every jti minted is far shorter)."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MINT_FIELDS = frozenset({"action", "sub", "ttl", "data", "state", "alg"})


def api_error(exc: ActionLinksError) -> Response:
    """The JSON error response of ``exc`` for an API client."""
    body: dict[str, Any] = {}
    headers = dict(NO_STORE)
    if isinstance(exc, RequestError):
        status, body["error"] = exc.status, exc.code
        if exc.field is not None:
            body["field"] = exc.field
        if exc.status >= 422:
            body["detail"] = str(exc)
        headers.update(exc.headers)
    elif isinstance(exc, InvalidArgumentError):
        status = 422
        body = {"error": "invalid_request", "field": exc.field, "detail": str(exc)}
    elif isinstance(exc, NotFoundError):
        status, body["error"] = 404, "not_found"
    elif isinstance(exc, ConflictError):
        status, body = 409, {"error": exc.code, "detail": str(exc)}
    elif isinstance(exc, LedgerUnavailableError):
        status, body["error"] = 503, "unavailable"
    else:
        status, body["error"] = 400, "invalid_request"
    return JSONResponse(body, status_code=status, headers=headers)


def invalid(field: str, detail: str) -> RequestError:
    """A 422 naming the ``field`` at fault."""
    return RequestError(detail, status=422, code="invalid_request", field=field)


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body, capped at 64 KiB.

    Raises:
        RequestError: 413, 415 or 422.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise RequestError(
            "send application/json", status=415, code="unsupported_media_type"
        )
    declared = request.headers.get("content-length", "")
    too_large = RequestError(
        "the body is over 64 KiB", status=413, code="body_too_large"
    )
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_BODY_BYTES:
                raise too_large
    except ClientDisconnect as exc:  # gone, or a body the server could not frame
        raise RequestError(
            "the body ended early", status=400, code="incomplete_body"
        ) from exc
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise invalid("body", "the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise invalid("body", "the body must be a JSON object")
    _check_tree(value)
    return value


def _no_constant(name: str) -> object:
    raise ValueError(name)  # NaN and Infinity are not JSON


def _check_tree(value: dict[str, Any]) -> None:
    """Refuse JSON that could not be stored and shown again as it came.

    The field named is the top-level one the fault is under.
    """
    pending: list[tuple[object, int, str]] = [
        (child, 1, key) for key, child in value.items()
    ]
    for key in value:
        _check_text(key, "body")
    while pending:
        item, depth, field = pending.pop()
        if depth > MAX_DEPTH:
            raise invalid(field, f"the body nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, str):
            _check_text(item, field)
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, field)
                pending.append((child, depth + 1, field))
        elif isinstance(item, list):
            pending.extend((child, depth + 1, field) for child in item)


def _check_text(text: str, field: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a \ud800 escape
        raise invalid(field, f"'{field}' holds a lone surrogate, not text") from exc


def text_field(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    """The non-empty string ``body[name]`` (``None`` when absent and optional).

    Raises:
        RequestError: 422 when required and absent, or not a non-empty string.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise invalid(name, f"'{name}' is required")
        return None
    if not isinstance(value, str) or not value:
        raise invalid(name, f"'{name}' must be a non-empty string")
    return value


def parse_ttl(value: object) -> timedelta | None:
    """A ``ttl`` given as positive seconds or a duration text (``15m``).

    Raises:
        InvalidArgumentError: anything else, zero, negative, or over ten years.
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 < value <= MAX_DURATION.total_seconds():
            raise InvalidArgumentError(
                "'ttl' must be 1 second to ten years", field="ttl"
            )
        return timedelta(seconds=value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ConfigurationError as exc:
            raise InvalidArgumentError(str(exc), field="ttl") from exc
    raise InvalidArgumentError(
        "'ttl' must be positive seconds or a duration like 15m", field="ttl"
    )


class ApiEndpoints:
    """The ``/v1/`` routes of one service."""

    def __init__(self, service: Service, *, metrics: Metrics) -> None:
        """Serve ``service``; count mints in ``metrics``."""
        self._service = service
        self._metrics = metrics

    def routes(self) -> list[Route]:
        """The API's routes, named ``api.…``."""
        return [
            Route(
                "/v1/links",
                self.guard(self.mint, "links:write"),
                methods=["POST"],
                name=f"{ROUTE_PREFIX}mint",
            ),
            Route(
                "/v1/links/revoke",
                self.guard(self.revoke, "links:write"),
                methods=["POST"],
                name=f"{ROUTE_PREFIX}revoke",
            ),
            Route(
                "/v1/links/{jti}",
                self.guard(self.status, "links:read"),
                methods=["GET"],
                name=f"{ROUTE_PREFIX}status",
            ),
            Route(
                "/metrics",
                self.guard(self.metrics, "metrics:read"),
                methods=["GET"],
                name=f"{ROUTE_PREFIX}metrics",
            ),
        ]

    async def metrics(self, request: Request, caller: ActionClaims) -> Response:
        """GET /metrics: Prometheus text (scope metrics:read).

        Behind a scope because the rejection counters say why links fail,
        which the link pages deliberately do not.
        """
        return PlainTextResponse(
            self._metrics.render(),
            media_type="text/plain; version=0.0.4",
            headers=NO_STORE,
        )

    @staticmethod
    def serves(request: Request) -> bool:
        """Whether ``request`` was routed to the API."""
        name = getattr(request.scope.get("route"), "name", None) or ""
        return name.startswith(ROUTE_PREFIX)

    def guard(
        self, endpoint: ScopedEndpoint, scope: str
    ) -> Callable[[Request], Awaitable[Response]]:
        """``endpoint`` behind a Bearer access token with ``scope``.

        ``scope`` may name several, space-separated: any one of them will do.
        """

        async def guarded(request: Request) -> Response:
            claims = await self._authorize(request, scope)
            return await endpoint(request, claims)

        guarded.__name__ = endpoint.__name__
        return guarded

    async def _authorize(self, request: Request, scope: str) -> ActionClaims:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise RequestError(
                "no Bearer token",
                status=401,
                code="unauthorized",
                headers={"WWW-Authenticate": _REALM},
            )
        try:
            claims = await self._service.access.authenticate(token.strip())
        except TokenError as exc:
            raise RequestError(
                "invalid access token",
                status=401,
                code="invalid_token",
                headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            ) from exc
        if claims.scopes.isdisjoint(scope.split()):
            raise RequestError(
                f"this route needs the {' or '.join(scope.split())} scope",
                status=403,
                code="insufficient_scope",
                headers={
                    "WWW-Authenticate": (
                        f'{_REALM}, error="insufficient_scope", scope="{scope}"'
                    )
                },
            )
        return claims

    async def mint(self, request: Request, caller: ActionClaims) -> Response:
        """POST /v1/links: mint a link; 201 with url, token, jti, expires_at."""
        body = await read_json(request)
        unknown = sorted(set(body) - _MINT_FIELDS)
        if unknown:
            raise invalid(unknown[0], f"unknown field '{unknown[0]}'")
        action = text_field(body, "action", required=True) or ""
        subject = text_field(body, "sub", required=True) or ""
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise invalid("data", "'data' must be a JSON object")
        algorithm = text_field(body, "alg", required=False)
        if algorithm is not None and algorithm not in ALGORITHMS:
            raise invalid("alg", f"'alg' must be one of {', '.join(ALGORITHMS)}")
        link = await self._service.registry.mint(
            action,
            subject=subject,
            ttl=parse_ttl(body.get("ttl")),
            data=data,
            state=text_field(body, "state", required=False),
            algorithm=parse_algorithm(algorithm) if algorithm else None,
        )
        self._metrics.count("actionlinks_links_minted_total", "action", action)
        return JSONResponse(
            {
                "url": link.url,
                "token": link.token,
                "jti": link.claims.token_id,
                "action": link.claims.action,
                "sub": link.claims.subject,
                "issued_at": format_instant(link.claims.issued_at),
                "expires_at": format_instant(link.claims.expires_at),
                "kid": link.claims.key_id,
                "alg": link.claims.algorithm,
            },
            status_code=201,
            headers=NO_STORE,
        )

    async def status(self, request: Request, caller: ActionClaims) -> Response:
        """GET /v1/links/{jti}: the link's state and rejected attempts."""
        jti = request.path_params["jti"]
        # No link has a jti with control characters (which PostgreSQL's text
        # cannot even hold) or of this length: unknown, never a store error.
        found = (
            None
            if len(jti) > MAX_JTI or _CONTROL.search(jti)
            else await self._service.links.status(jti)
        )
        if found is None:
            raise RequestError("no link with this jti", status=404, code="not_found")
        body = status_json(found)
        body["dispatch"] = self._service.describe(found.action)
        return JSONResponse(body, headers=NO_STORE)

    async def revoke(self, request: Request, caller: ActionClaims) -> Response:
        """POST /v1/links/revoke: ``{"jti"}`` or ``{"sub", "action"?}``."""
        body = await read_json(request)
        unknown = sorted(set(body) - {"jti", "sub", "action"})
        if unknown:
            raise invalid(unknown[0], f"unknown field '{unknown[0]}'")
        token_id = text_field(body, "jti", required=False)
        subject = text_field(body, "sub", required=False)
        action = text_field(body, "action", required=False)
        registry = self._service.registry
        if (token_id is None) == (subject is None):
            raise invalid("jti", "give either 'jti' or 'sub'")
        if token_id is not None:
            if action is not None:
                raise invalid("action", "'action' goes with 'sub', not 'jti'")
            await registry.revoke(token_id)  # checks the id first
            known = await self._service.links.status(token_id) is not None
            return JSONResponse(
                {"revoked": {"jti": token_id}, "known": known}, headers=NO_STORE
            )
        await registry.revoke_subject(subject or "", action=action)
        return JSONResponse(
            {"revoked": {"sub": subject, "action": action}}, headers=NO_STORE
        )
