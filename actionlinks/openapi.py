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
