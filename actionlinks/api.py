"""The HTTP API under ``/v1/``: JSON, Bearer access tokens with scopes.

Errors are JSON with a stable ``error`` code: 401 (with ``WWW-Authenticate:
Bearer``) for a missing or invalid token, 403 for a missing scope, 413 for a
body over 64 KiB, 415 for a body that is not JSON, 422 (naming the ``field``) for
a malformed one, 503 when the database is unavailable.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from actionlinks.access import SCOPES
from actionlinks.clock import format_instant
from actionlinks.errors import (
    ConfigurationError,
    LedgerUnavailableError,
    TokenError,
)
from actionlinks.keys import ALGORITHMS, parse_algorithm
from actionlinks.settings import parse_duration
from actionlinks.store import status_json
from actionlinks.tokens import check_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from actionlinks.metrics import Metrics
    from actionlinks.service import Service
    from actionlinks.tokens import ActionClaims

if TYPE_CHECKING:
    ScopedEndpoint = Callable[[Request, ActionClaims], Awaitable[Response]]

MAX_BODY_BYTES = 64 * 1024
_REALM = 'Bearer realm="actionlinks"'
_NO_STORE = {"Cache-Control": "no-store"}
_MINT_FIELDS = frozenset({"action", "sub", "ttl", "data", "state", "alg"})


class ApiError(Exception):
    """A refused API request: status, stable code, and the field at fault."""

    def __init__(
        self,
        status: int,
        code: str,
        *,
        field: str | None = None,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Carry what the JSON error says."""
        super().__init__(code)
        self.status = status
        self.code = code
        self.field = field
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> Response:
        """The JSON error response."""
        body: dict[str, Any] = {"error": self.code}
        if self.field is not None:
            body["field"] = self.field
        if self.detail is not None:
            body["detail"] = self.detail
        return JSONResponse(
            body, status_code=self.status, headers={**_NO_STORE, **self.headers}
        )


def _invalid(field: str, detail: str) -> ApiError:
    return ApiError(422, "invalid_request", field=field, detail=detail)


async def read_json(request: Request) -> dict[str, Any]:
    """The request's JSON object body, capped at 64 KiB.

    Raises:
        ApiError: 413, 415 or 422.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "unsupported_media_type", detail="send application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, "body_too_large")
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _invalid("body", "the body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise _invalid("body", "the body must be a JSON object")
    return value


def _text(body: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(name, f"'{name}' is required")
        return None
    if not isinstance(value, str) or not value:
        raise _invalid(name, f"'{name}' must be a non-empty string")
    try:
        return check_text(value, f"'{name}'", limit=4096, controls=name == "state")
    except ConfigurationError as exc:
        raise _invalid(name, str(exc)) from exc


def _ttl(value: object) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return timedelta(seconds=value)
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ConfigurationError as exc:
            raise _invalid("ttl", str(exc)) from exc
    raise _invalid("ttl", "'ttl' must be positive seconds or a duration like 15m")


def _field_of(exc: ConfigurationError) -> str:
    message = str(exc)
    for name in ("ttl", "data", "scope", "state"):
        if name in message:
            return name
    return "sub"


class ApiEndpoints:
    """The ``/v1/`` routes of one service."""

    def __init__(self, service: Service, *, metrics: Metrics) -> None:
        """Serve ``service``; count mints in ``metrics``."""
        self._service = service
        self._metrics = metrics

    def routes(self) -> list[Route]:
        """The API's routes."""
        return [
            Route("/v1/links", self._guard(self.mint, "links:write"), methods=["POST"]),
            Route(
                "/v1/links/revoke",
                self._guard(self.revoke, "links:write"),
                methods=["POST"],
            ),
            Route(
                "/v1/links/{jti}",
                self._guard(self.status, "links:read"),
                methods=["GET"],
            ),
        ]

    def _guard(
        self, endpoint: ScopedEndpoint, scope: str
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            try:
                claims = await self._authorize(request, scope)
                return await endpoint(request, claims)
            except ApiError as exc:
                return exc.response()
            except LedgerUnavailableError:
                return ApiError(503, "unavailable").response()

        guarded.__name__ = endpoint.__name__
        return guarded

    async def _authorize(self, request: Request, scope: str) -> ActionClaims:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", headers={"WWW-Authenticate": _REALM})
        try:
            claims = await self._service.access.authenticate(token.strip())
        except TokenError as exc:
            raise ApiError(
                401,
                "invalid_token",
                headers={"WWW-Authenticate": f'{_REALM}, error="invalid_token"'},
            ) from exc
        if scope not in claims.scopes:
            raise ApiError(
                403,
                "insufficient_scope",
                detail=f"this route needs the {scope} scope",
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
            raise _invalid(unknown[0], f"unknown field '{unknown[0]}'")
        action = _text(body, "action", required=True) or ""
        if action not in self._service.registry.actions:
            raise _invalid("action", "no such action")
        subject = _text(body, "sub", required=True) or ""
        data = body.get("data")
        if data is not None and not isinstance(data, dict):
            raise _invalid("data", "'data' must be a JSON object")
        algorithm = _text(body, "alg", required=False)
        if algorithm is not None and algorithm not in ALGORITHMS:
            raise _invalid("alg", f"'alg' must be one of {', '.join(ALGORITHMS)}")
        try:
            link = await self._service.registry.mint(
                action,
                subject=subject,
                ttl=_ttl(body.get("ttl")),
                data=data,
                state=_text(body, "state", required=False),
                algorithm=parse_algorithm(algorithm) if algorithm else None,
            )
        except ConfigurationError as exc:
            raise _invalid(_field_of(exc), str(exc)) from exc
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
            headers=_NO_STORE,
        )

    async def status(self, request: Request, caller: ActionClaims) -> Response:
        """GET /v1/links/{jti}: the link's state and rejected attempts."""
        found = await self._service.store.status(request.path_params["jti"])
        if found is None:
            raise ApiError(404, "not_found", detail="no link with this jti")
        return JSONResponse(status_json(found), headers=_NO_STORE)

    async def revoke(self, request: Request, caller: ActionClaims) -> Response:
        """POST /v1/links/revoke: ``{"jti"}`` or ``{"sub", "action"?}``."""
        body = await read_json(request)
        unknown = sorted(set(body) - {"jti", "sub", "action"})
        if unknown:
            raise _invalid(unknown[0], f"unknown field '{unknown[0]}'")
        token_id = _text(body, "jti", required=False)
        subject = _text(body, "sub", required=False)
        action = _text(body, "action", required=False)
        registry = self._service.registry
        if (token_id is None) == (subject is None):
            raise _invalid("jti", "give either 'jti' or 'sub'")
        if token_id is not None:
            if action is not None:
                raise _invalid("action", "'action' goes with 'sub', not 'jti'")
            await registry.revoke(token_id)
            return JSONResponse({"revoked": {"jti": token_id}}, headers=_NO_STORE)
        if action is not None and action not in registry.actions:
            raise _invalid("action", "no such action")
        await registry.revoke_subject(subject or "", action=action)
        return JSONResponse(
            {"revoked": {"sub": subject, "action": action}}, headers=_NO_STORE
        )


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "field": {"type": "string"},
            "detail": {"type": "string"},
        },
    }


def openapi_document(base_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the HTTP API."""
    error = {"$ref": "#/components/schemas/Error"}

    def errors(*codes: int) -> dict[str, Any]:
        return {
            str(code): {
                "description": description,
                "content": {"application/json": {"schema": error}},
            }
            for code, description in (
                (401, "Missing or invalid access token"),
                (403, "The access token lacks the scope"),
                (404, "No such link"),
                (413, "Body over 64 KiB"),
                (415, "Body is not application/json"),
                (422, "Malformed body; 'field' names the culprit"),
                (503, "Database unavailable"),
            )
            if code in codes
        }

    def json_body(schema: str) -> dict[str, Any]:
        return {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": f"#/components/schemas/{schema}"}
                }
            },
        }

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "actionlinks",
            "version": "1",
            "description": "Mint, inspect and revoke signed one-time action links.",
        },
        "servers": [{"url": base_url}],
        "security": [{"bearer": []}],
        "paths": {
            "/v1/links": {
                "post": {
                    "operationId": "mintLink",
                    "summary": "Mint a link (scope links:write)",
                    "requestBody": json_body("MintRequest"),
                    "responses": {
                        "201": {
                            "description": "The minted link",
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/Link"}
                                }
                            },
                        },
                        **errors(401, 403, 413, 415, 422, 503),
                    },
                }
            },
            "/v1/links/{jti}": {
                "get": {
                    "operationId": "getLinkStatus",
                    "summary": "A link's status (scope links:read)",
                    "parameters": [
                        {
                            "name": "jti",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The link's status",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "$ref": "#/components/schemas/LinkStatus"
                                    }
                                }
                            },
                        },
                        **errors(401, 403, 404, 503),
                    },
                }
            },
            "/v1/links/revoke": {
                "post": {
                    "operationId": "revokeLinks",
                    "summary": "Revoke a link or a subject's links (scope links:write)",
                    "requestBody": json_body("RevokeRequest"),
                    "responses": {
                        "200": {"description": "Revoked"},
                        **errors(401, 403, 413, 415, 422, 503),
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An access token from `actionlinks tokens issue`; "
                    f"scopes: {', '.join(SCOPES)}",
                }
            },
            "schemas": {
                "Error": _error_schema(),
                "MintRequest": {
                    "type": "object",
                    "required": ["action", "sub"],
                    "additionalProperties": False,
                    "properties": {
                        "action": {"type": "string"},
                        "sub": {"type": "string", "minLength": 1, "maxLength": 256},
                        "ttl": {
                            "oneOf": [
                                {"type": "integer", "minimum": 1},
                                {"type": "string"},
                            ]
                        },
                        "data": {"type": "object"},
                        "state": {"type": "string"},
                        "alg": {"enum": list(ALGORITHMS)},
                    },
                },
                "Link": {
                    "type": "object",
                    "properties": {
                        name: {"type": "string"}
                        for name in (
                            "url",
                            "token",
                            "jti",
                            "action",
                            "sub",
                            "issued_at",
                            "expires_at",
                            "kid",
                            "alg",
                        )
                    },
                },
                "LinkStatus": {
                    "type": "object",
                    "properties": {
                        "jti": {"type": "string"},
                        "action": {"type": "string"},
                        "sub": {"type": "string"},
                        "state": {
                            "enum": ["issued", "viewed", "used", "expired", "revoked"]
                        },
                        "issued_at": {"type": "string", "format": "date-time"},
                        "expires_at": {"type": "string", "format": "date-time"},
                        "viewed_at": {"type": ["string", "null"]},
                        "used_at": {"type": ["string", "null"]},
                        "revoked_at": {"type": ["string", "null"]},
                        "rejected_attempts": {"type": "array"},
                    },
                },
                "RevokeRequest": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "jti": {"type": "string"},
                        "sub": {"type": "string"},
                        "action": {"type": "string"},
                    },
                },
            },
        },
    }
