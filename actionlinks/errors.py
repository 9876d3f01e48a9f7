"""The whole exception tree of actionlinks.

Every error a public call raises is one of these; PyJWT, ``json``, ``base64``,
``sqlite3`` and the other libraries underneath are translated at the boundary.
No message or repr carries a token, a secret or a signed URL: errors carry
evidence as keyword-only attributes instead. Each class has a stable ``code``
(``"expired"``, ``"already_used"``, …) used in HTTP responses, logs and metrics.

::

    ActionLinksError
    ├── ConfigurationError        invalid settings or arguments; raised at construction
    ├── KeyFileError              the keys file is missing, unreadable or unsafe
    ├── TokenError                the presented link is unusable (4xx, never 500)
    │   ├── MalformedTokenError   not a well-formed compact JWS of ours
    │   ├── InvalidSignatureError also covers an unknown kid or a disallowed alg
    │   ├── WrongPurposeError     another token kind (typ) or another action
    │   ├── TokenExpiredError     .expired_at
    │   ├── TokenNotYetValidError .not_before
    │   ├── StateChangedError     the subject's state moved on since minting
    │   ├── TokenRevokedError     .token_id
    │   └── TokenAlreadyUsedError .token_id, .used_at
    ├── LedgerUnavailableError    store failure (503); never read as "unused"
    ├── HandlerError              an action's handler failed; the use was released
    └── WebhookError
        └── WebhookDeliveryError  .status_code: a non-2xx answer or no answer
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime


class ActionLinksError(Exception):
    """Root of every error raised by actionlinks."""

    code = "error"


class ConfigurationError(ActionLinksError):
    """Invalid settings or arguments, raised when an object is built."""

    code = "configuration"


class KeyFileError(ConfigurationError):
    """The keys file is missing, unreadable, malformed or readable by others."""

    code = "key_file"


class TokenError(ActionLinksError):
    """The presented token is unusable; maps to a 4xx, never a 500."""

    code = "invalid_token"


class MalformedTokenError(TokenError):
    """The input is not a well-formed, canonical compact JWS of ours."""

    code = "malformed"


class InvalidSignatureError(TokenError):
    """The signature does not verify, or the key or algorithm is not allowed."""

    code = "invalid_signature"


class WrongPurposeError(TokenError):
    """The token is of another kind (``typ``), action or issuer."""

    code = "wrong_purpose"


class TokenExpiredError(TokenError):
    """The token's lifetime ended.

    Attributes:
        expired_at: when it ended (aware UTC).
        action: the action of the (authentic) token, to offer a new link.
        subject: its subject, to offer a new link (never in the message).
        token_id: its id, so that it is renewed at most once.
    """

    code = "expired"

    def __init__(
        self,
        message: str,
        *,
        expired_at: datetime,
        action: str | None = None,
        subject: str | None = None,
        token_id: str | None = None,
    ) -> None:
        """Carry the instant the token expired and, once signed, whose it was."""
        super().__init__(message)
        self.expired_at = expired_at
        self.action = action
        self.subject = subject
        self.token_id = token_id


class TokenNotYetValidError(TokenError):
    """The token claims to be issued in the future, beyond the leeway.

    Attributes:
        not_before: the earliest instant it would be accepted (aware UTC).
    """

    code = "not_yet_valid"

    def __init__(self, message: str, *, not_before: datetime) -> None:
        """Carry the instant the token becomes valid."""
        super().__init__(message)
        self.not_before = not_before


class StateChangedError(TokenError):
    """The state the token was bound to (a password hash, an e-mail) changed."""

    code = "state_changed"


class TokenRevokedError(TokenError):
    """The token, or every token of its subject, was revoked.

    Attributes:
        token_id: the revoked token's id (not the token itself).
    """

    code = "revoked"

    def __init__(self, message: str, *, token_id: str) -> None:
        """Carry the id of the revoked token."""
        super().__init__(message)
        self.token_id = token_id


class TokenAlreadyUsedError(TokenError):
    """A one-time token was already used.

    Attributes:
        token_id: the token's id (not the token itself).
        used_at: when it was used, if the ledger still knows.
    """

    code = "already_used"

    def __init__(
        self, message: str, *, token_id: str, used_at: datetime | None
    ) -> None:
        """Carry the id of the used token and when it was used."""
        super().__init__(message)
        self.token_id = token_id
        self.used_at = used_at


class LedgerUnavailableError(ActionLinksError):
    """The one-time-use store failed; nothing was consumed (maps to 503)."""

    code = "unavailable"


class HandlerError(ActionLinksError):
    """An action's handler raised; the use was released so it can be retried.

    The handler's own exception is the ``__cause__``.
    """

    code = "handler_failed"


class WebhookError(ActionLinksError):
    """Something went wrong with a webhook."""

    code = "webhook"


class WebhookDeliveryError(WebhookError):
    """A webhook was not accepted: a non-2xx answer, a timeout or no connection.

    Attributes:
        status_code: the receiver's HTTP status, or ``None`` without an answer.
    """

    code = "webhook_delivery"

    def __init__(self, message: str, *, status_code: int | None) -> None:
        """Carry the receiver's status code."""
        super().__init__(message)
        self.status_code = status_code
