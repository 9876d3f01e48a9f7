"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from actionlinks.access import SCOPES
from actionlinks.keys import ALGORITHMS


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


def _operation(  # noqa: PLR0913 - one OpenAPI operation, spelled out
    operation_id: str,
    summary: str,
    status: int,
    schema: str | None,
    errors: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    path_id: bool = False,
) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": summary}
    if schema is not None:
        answer["content"] = {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}
        }
    operation: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "responses": {str(status): answer, **errors},
    }
    if body is not None:
        operation["requestBody"] = body
    if path_id:
        operation["parameters"] = [
            {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    return operation


def _webhook_paths(
    errors: Any,  # noqa: ANN401 - the document's error-response builder
    json_body: Any,  # noqa: ANN401 - the document's request-body builder
) -> dict[str, Any]:
    read, write = (
        errors(401, 403, 404, 503),
        errors(401, 403, 404, 409, 413, 415, 422, 503),
    )
    return {
        "/v1/webhooks/endpoints": {
            "post": _operation(
                "addWebhookEndpoint",
                "Register an endpoint; the answer holds its secret (webhooks:write)",
                201,
                "WebhookEndpoint",
                write,
                body=json_body("WebhookEndpointRequest"),
            ),
            "get": _operation(
                "listWebhookEndpoints",
                "Every endpoint, never a secret (webhooks:read)",
                200,
                None,
                read,
            ),
        },
        "/v1/webhooks/endpoints/{id}": {
            "get": _operation(
                "getWebhookEndpoint",
                "One endpoint, never its secret (webhooks:read)",
                200,
                "WebhookEndpoint",
                read,
                path_id=True,
            ),
            "delete": _operation(
                "disableWebhookEndpoint",
                "Disable an endpoint; what waits for it fails (webhooks:write)",
                200,
                "WebhookEndpoint",
                write,
                path_id=True,
            ),
        },
        "/v1/webhooks/endpoints/{id}/rotate": {
            "post": _operation(
                "rotateWebhookSecret",
                "A new secret; the old ones sign for the overlap, 24h by default "
                "(webhooks:write)",
                200,
                "WebhookEndpoint",
                write,
                path_id=True,
            )
        },
        "/v1/webhooks/endpoints/{id}/enable": {
            "post": _operation(
                "enableWebhookEndpoint",
                "Enable a disabled endpoint again (webhooks:write)",
                200,
                "WebhookEndpoint",
                write,
                path_id=True,
            )
        },
        "/v1/webhooks/messages": {
            "post": _operation(
                "sendWebhookMessage",
                "Store a message for its endpoints; 202 once stored (webhooks:write)",
                202,
                "WebhookMessage",
                write,
                body=json_body("WebhookMessageRequest"),
            ),
            "get": _operation(
                "listWebhookMessages",
                "Messages newest first; ?state=failed lists the dead letters, "
                "?limit=1-100, ?before=<id> pages (webhooks:read)",
                200,
                None,
                errors(401, 403, 422, 503),
            ),
        },
        "/v1/webhooks/messages/{id}": {
            "get": _operation(
                "getWebhookMessage",
                "A message, its deliveries and every attempt (webhooks:read)",
                200,
                "WebhookMessage",
                read,
                path_id=True,
            )
        },
        "/v1/webhooks/messages/{id}/redeliver": {
            "post": _operation(
                "redeliverWebhookMessage",
                "Deliver again now, under the same id (webhooks:write)",
                202,
                "WebhookMessage",
                write,
                path_id=True,
            )
        },
    }


def _mail_paths(
    errors: Any,  # noqa: ANN401 - the document's error-response builder
    json_body: Any,  # noqa: ANN401 - the document's request-body builder
) -> dict[str, Any]:
    return {
        "/v1/emails": {
            "post": _operation(
                "sendMail",
                "Mint an action's link and store its mail; 202 once stored (mail:send)",
                202,
                "Mail",
                errors(401, 403, 413, 415, 422, 503),
                body=json_body("MailRequest"),
            ),
            "get": _operation(
                "listMail",
                "Mail newest first; ?state=pending|delivered|failed (the dead "
                "letters), ?limit=1-100, ?before=<id> pages (mail:read or mail:send)",
                200,
                None,
                errors(401, 403, 422, 503),
            ),
        },
        "/v1/emails/{id}/resend": {
            "post": _operation(
                "resendMail",
                "Send a mail again now, the same bytes and link (mail:send)",
                202,
                "Mail",
                errors(401, 403, 404, 503),
                path_id=True,
            )
        },
        "/v1/emails/{id}": {
            "get": _operation(
                "getMail",
                "A mail's state and every attempt (mail:read or mail:send)",
                200,
                "Mail",
                errors(401, 403, 404, 503),
                path_id=True,
            )
        },
    }


def _mail_schemas() -> dict[str, Any]:
    text, instant = (
        {"type": "string"},
        {"type": ["string", "null"], "format": "date-time"},
    )
    return {
        "MailRequest": {
            "type": "object",
            "required": ["action", "to", "sub"],
            "additionalProperties": False,
            "properties": {
                "action": text,
                "to": {**text, "format": "email"},
                "sub": {**text, "minLength": 1, "maxLength": 256},
                "data": {"type": "object"},
                "ttl": {"oneOf": [{"type": "integer", "minimum": 1}, text]},
            },
        },
        "Mail": {
            "type": "object",
            "properties": {
                "id": text,
                "action": text,
                "jti": text,
                "to": text,
                "subject": text,
                "message_id": text,
                "state": {"enum": ["pending", "delivered", "failed"]},
                "created_at": instant,
                "attempts": {"type": "integer"},
                "next_attempt_at": instant,
                "history": {"type": "array", "items": {"type": "object"}},
            },
        },
    }


def _webhook_schemas() -> dict[str, Any]:
    text, instant = (
        {"type": "string"},
        {"type": ["string", "null"], "format": "date-time"},
    )
    return {
        "WebhookEndpointRequest": {
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {
                "url": text,
                "event_types": {"type": ["array", "null"], "items": text},
                "jwt_header": {"type": ["string", "null"]},
            },
        },
        "WebhookEndpoint": {
            "type": "object",
            "properties": {
                "id": text,
                "url": text,
                "event_types": {"type": ["array", "null"], "items": text},
                "jwt_header": {"type": ["string", "null"]},
                "state": {"enum": ["enabled", "disabled"]},
                "disabled_reason": {"type": ["string", "null"]},
                "created_at": instant,
                "secret": {**text, "description": "only when created or rotated"},
            },
        },
        "WebhookMessageRequest": {
            "type": "object",
            "required": ["event_type", "payload"],
            "additionalProperties": False,
            "properties": {
                "event_type": text,
                "payload": {"type": "object"},
                "endpoint_id": text,
                "id": {**text, "description": "your id: sending it again is a no-op"},
            },
        },
        "WebhookMessage": {
            "type": "object",
            "properties": {
                "id": text,
                "event_type": text,
                "state": {"enum": ["pending", "delivered", "failed", "none"]},
                "created_at": instant,
                "payload": {"type": "object"},
                "deliveries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "endpoint_id": text,
                            "state": {"enum": ["pending", "delivered", "failed"]},
                            "attempts": {"type": "integer"},
                            "next_attempt_at": instant,
                            "history": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "at": instant,
                                        "status": {"type": ["integer", "null"]},
                                        "latency_ms": {"type": "number"},
                                        "response": text,
                                        "error": {"type": ["string", "null"]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
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
                (404, "No such link, endpoint, message or mail"),
                (
                    409,
                    "Conflicts with what is stored (a disabled endpoint, a reused id)",
                ),
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
            "description": "Mint, inspect and revoke signed one-time action links; "
            "send their mail and signed webhooks durably.",
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
            **_webhook_paths(errors, json_body),
            **_mail_paths(errors, json_body),
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
                **_webhook_schemas(),
                **_mail_schemas(),
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
