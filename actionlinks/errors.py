"""The whole exception tree of actionlinks.

Every error a public call raises is one of these; PyJWT, ``json``, ``base64``,
``sqlite3`` and the other libraries underneath are translated at the boundary.
No message or repr carries a token, a secret or a signed URL: errors carry
evidence as keyword-only attributes instead. Each class has a stable ``code``
(``"expired"``, ``"already_used"``, …) used in HTTP responses, logs and metrics.

::

    ActionLinksError
    ├── ConfigurationError        invalid settings or arguments; raised at construction
    │   ├── InvalidArgumentError  .field: one argument of a call is bad (ttl, data, …)
    │   └── KeyFileError          the keys file is missing, unreadable or unsafe
    ├── RequestError              .status, .field: an HTTP request refused (4xx)
    ├── TokenError                the presented link is unusable (4xx, never 500)
    │   ├── MalformedTokenError   not a well-formed compact JWS of ours
    │   ├── InvalidSignatureError also covers an unknown kid or a disallowed alg
    │   ├── WrongPurposeError     another token kind (typ) or another action
    │   ├── TokenExpiredError     .expired_at
    │   ├── TokenNotYetValidError .not_before
    │   ├── StateChangedError     the subject's state moved on since minting
    │   ├── TokenRevokedError     .token_id
    │   ├── TokenAlreadyUsedError .token_id, .used_at
    │   └── NotRenewableError     an expired link that may not be renewed
    ├── LedgerUnavailableError    store failure (503); never read as "unused"
    │   └── ServiceClosedError    the service was used before it was opened
    ├── HandlerError              .released: an action's handler failed
    ├── NotFoundError             .what: no endpoint or message with that id (404)
    ├── ConflictError             the request contradicts the state (409)
    ├── WebhookError
    │   ├── WebhookDeliveryError  .status_code: a non-2xx answer or no answer
    │   └── WebhookVerificationError .reason: an inbound webhook is not authentic
    └── MailDeliveryError         .reply_code, .permanent: the SMTP server did not
                                  take a mail
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime


class ActionLinksError(Exception):
    """Root of every error raised by actionlinks."""

    code = "error"


class ConfigurationError(ActionLinksError):
    """Invalid settings or arguments, raised when an object is built."""

    code = "configuration"


class InvalidArgumentError(ConfigurationError):
    """One argument of a call is invalid; ``field`` names it (``ttl``, ``data``, …).

    Attributes:
        field: the argument's wire name, as the HTTP API and the CLI call it.
    """

    code = "invalid_argument"

    def __init__(self, message: str, *, field: str) -> None:
        """Carry the name of the argument at fault."""
        super().__init__(message)
        self.field = field


class KeyFileError(ConfigurationError):
    """The keys file is missing, unreadable, malformed or readable by others."""

    code = "key_file"


class RequestError(ActionLinksError):
    """An HTTP request was refused: a body, a form or credentials not accepted.

    Attributes:
        status: the HTTP status (4xx).
        code: a stable error code (``body_too_large``, ``invalid_form``, …).
        field: the part of the request at fault, when there is one.
        headers: extra response headers (``WWW-Authenticate``).
    """

    code = "invalid_request"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Carry the status, the stable code and the field at fault."""
        super().__init__(message)
        self.status = status
        self.code = code
        self.field = field
        self.headers = headers or {}


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
        issued_at: when it was issued, to tell whether a revocation covers it.
        data: its app data, carried into a renewed link.
    """

    code = "expired"

    def __init__(  # noqa: PLR0913 - evidence, all keyword-only
        self,
        message: str,
        *,
        expired_at: datetime,
        action: str | None = None,
        subject: str | None = None,
        token_id: str | None = None,
        issued_at: datetime | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Carry the instant the token expired and, once signed, whose it was."""
        super().__init__(message)
        self.expired_at = expired_at
        self.action = action
        self.subject = subject
        self.token_id = token_id
        self.issued_at = issued_at
        self.data = data


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


class NotRenewableError(TokenError):
    """An expired link may not be renewed.

    It was used or revoked (by id or subject), was renewed already, expired too
    long ago, or its action has no way to deliver a new link.
    """

    code = "not_renewable"


class LedgerUnavailableError(ActionLinksError):
    """The one-time-use store failed; nothing was consumed (maps to 503)."""

    code = "unavailable"


class ServiceClosedError(LedgerUnavailableError):
    """The service was used while closed: open it (``async with service``) first.

    A Starlette app mounted in another app does not run its own lifespan, so
    the outer app's lifespan must open the service.
    """

    code = "service_closed"


class HandlerError(ActionLinksError):
    """An action's handler raised; the handler's exception is the ``__cause__``.

    Attributes:
        released: whether the use was released so the link can be used again
            (``False`` when releasing it failed too: the link may be spent).
    """

    code = "handler_failed"
    released = True

    def __init__(self, message: str, *, released: bool = True) -> None:
        """Carry whether the use was released."""
        super().__init__(message)
        self.released = released


class NotFoundError(ActionLinksError):
    """No such thing: a webhook endpoint or a message id that is not known.

    Attributes:
        what: ``endpoint`` or ``message``.
    """

    code = "not_found"

    def __init__(self, message: str, *, what: str) -> None:
        """Carry what was not found."""
        super().__init__(message)
        self.what = what


class ConflictError(ActionLinksError):
    """The request contradicts what is stored (a disabled endpoint, a reused id).

    Attributes:
        code: ``endpoint_disabled`` or ``message_exists``.
    """

    code = "conflict"

    def __init__(self, message: str, *, code: str) -> None:
        """Carry the stable code."""
        super().__init__(message)
        self.code = code


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


class WebhookVerificationError(WebhookError):
    """An inbound webhook is not authentic, is stale, or was seen before.

    One class for every reason, so that what a receiver answers leaks nothing;
    ``reason`` (a stable code) is for its log.

    Attributes:
        reason: ``missing_headers``, ``malformed``, ``stale``, ``future``,
            ``no_valid_signature`` or ``replayed``.
    """

    code = "webhook_verification"

    def __init__(self, message: str, *, reason: str) -> None:
        """Carry the reason code."""
        super().__init__(message)
        self.reason = reason


class MailDeliveryError(ActionLinksError):
    """An SMTP server did not take a mail: a refusal, a timeout or no connection.

    Attributes:
        reply_code: the server's reply code, or ``None`` without a reply.
        reply: the server's reply text (never the mail).
        permanent: a 5xx refusal of this mail (at MAIL, RCPT or DATA): trying
            again would fail the same way.
    """

    code = "mail_delivery"

    def __init__(
        self, message: str, *, reply_code: int | None, reply: str = "", permanent: bool
    ) -> None:
        """Carry the server's reply."""
        super().__init__(message)
        self.reply_code = reply_code
        self.reply = reply
        self.permanent = permanent
