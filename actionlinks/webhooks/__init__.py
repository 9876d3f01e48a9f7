"""Webhooks: Standard Webhooks signing, destination checks, and sending.

- :mod:`~actionlinks.webhooks.signing`: pure signing over the exact bytes sent.
- :mod:`~actionlinks.webhooks.guard`: public destinations only, checked on the
  connection (no SSRF, no DNS rebinding).
- :mod:`~actionlinks.webhooks.sender`: one signed POST to one endpoint.
"""

from actionlinks.webhooks.guard import (
    PublicOnlyTransport,
    check_url,
    is_private_literal,
)
from actionlinks.webhooks.sender import WebhookEndpoint, WebhookSender
from actionlinks.webhooks.signing import (
    generate_secret,
    new_message_id,
    secret_bytes,
    sign,
    signature_headers,
)

__all__ = [
    "PublicOnlyTransport",
    "WebhookEndpoint",
    "WebhookSender",
    "check_url",
    "generate_secret",
    "is_private_literal",
    "new_message_id",
    "secret_bytes",
    "sign",
    "signature_headers",
]
