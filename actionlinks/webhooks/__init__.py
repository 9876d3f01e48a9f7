"""Webhooks: Standard Webhooks signing, the JWT header, receiving, and sending.

- :mod:`~actionlinks.webhooks.signing`: ``v1`` (HMAC) and ``v1a`` (Ed25519)
  signatures over the exact bytes sent.
- :mod:`~actionlinks.webhooks.jwt`: the JWT header (EdDSA/ES256, ``kid`` in the
  service's JWKS) binding the body, the destination and the message id.
- :mod:`~actionlinks.webhooks.receiving`: verifying all three, replay guards.
- :mod:`~actionlinks.webhooks.guard`: public destinations only, checked on the
  connection (no SSRF, no DNS rebinding).
- :mod:`~actionlinks.webhooks.sender`: one signed POST to one endpoint.
"""

from actionlinks.webhooks.guard import (
    PublicOnlyTransport,
    check_url,
    is_private_literal,
)
from actionlinks.webhooks.jwt import (
    WEBHOOK_TYP,
    WebhookJwtClaims,
    mint_webhook_jwt,
    verify_webhook_jwt,
)
from actionlinks.webhooks.received import ReceivedWebhook
from actionlinks.webhooks.receiving import (
    LedgerReplayGuard,
    MemoryReplayGuard,
    ReplayGuard,
    WebhookVerifier,
)
from actionlinks.webhooks.sender import JwtSigner, WebhookEndpoint, WebhookSender
from actionlinks.webhooks.signing import (
    generate_secret,
    generate_signing_key,
    new_message_id,
    secret_bytes,
    sign,
    sign_v1a,
    signature_headers,
)

__all__ = [
    "WEBHOOK_TYP",
    "JwtSigner",
    "LedgerReplayGuard",
    "MemoryReplayGuard",
    "PublicOnlyTransport",
    "ReceivedWebhook",
    "ReplayGuard",
    "WebhookEndpoint",
    "WebhookJwtClaims",
    "WebhookSender",
    "WebhookVerifier",
    "check_url",
    "generate_secret",
    "generate_signing_key",
    "is_private_literal",
    "mint_webhook_jwt",
    "new_message_id",
    "secret_bytes",
    "sign",
    "sign_v1a",
    "signature_headers",
    "verify_webhook_jwt",
]
