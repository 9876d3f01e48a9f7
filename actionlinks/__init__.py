"""actionlinks: signed, short-lived, single-purpose, one-time action links.

The facade re-exports the library's public names; the web app and the CLI are
imported from their own modules (``actionlinks.web``, ``actionlinks.cli``).
"""

from importlib.metadata import PackageNotFoundError as _PackageNotFoundError
from importlib.metadata import version as _version

from actionlinks.actions import (
    DEFAULT_ACTIONS,
    Action,
    Dispatcher,
    HandlerDispatcher,
    Link,
    Redemption,
)
from actionlinks.clock import Clock, SystemClock
from actionlinks.errors import (
    ActionLinksError,
    ConfigurationError,
    ConflictError,
    HandlerError,
    InvalidArgumentError,
    InvalidSignatureError,
    KeyFileError,
    LedgerUnavailableError,
    MailDeliveryError,
    MalformedTokenError,
    NotFoundError,
    NotRenewableError,
    RequestError,
    ServiceClosedError,
    StateChangedError,
    TokenAlreadyUsedError,
    TokenError,
    TokenExpiredError,
    TokenNotYetValidError,
    TokenRevokedError,
    WebhookDeliveryError,
    WebhookError,
    WebhookVerificationError,
    WrongPurposeError,
)
from actionlinks.keys import KeyRing, PublicKey, PublicKeySet, SigningKey
from actionlinks.ledger import Ledger, LedgerEntry, MemoryLedger
from actionlinks.registry import ActionRegistry, ExpiredLink
from actionlinks.tokens import (
    ActionClaims,
    MintedToken,
    Purpose,
    TokenIssuer,
    TokenKind,
)

try:
    __version__ = _version("actionlinks")
except _PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0.0.0"

__all__ = [
    "DEFAULT_ACTIONS",
    "Action",
    "ActionClaims",
    "ActionLinksError",
    "ActionRegistry",
    "Clock",
    "ConfigurationError",
    "ConflictError",
    "Dispatcher",
    "ExpiredLink",
    "HandlerDispatcher",
    "HandlerError",
    "InvalidArgumentError",
    "InvalidSignatureError",
    "KeyFileError",
    "KeyRing",
    "Ledger",
    "LedgerEntry",
    "LedgerUnavailableError",
    "Link",
    "MailDeliveryError",
    "MalformedTokenError",
    "MemoryLedger",
    "MintedToken",
    "NotFoundError",
    "NotRenewableError",
    "PublicKey",
    "PublicKeySet",
    "Purpose",
    "Redemption",
    "RequestError",
    "ServiceClosedError",
    "SigningKey",
    "StateChangedError",
    "SystemClock",
    "TokenAlreadyUsedError",
    "TokenError",
    "TokenExpiredError",
    "TokenIssuer",
    "TokenKind",
    "TokenNotYetValidError",
    "TokenRevokedError",
    "WebhookDeliveryError",
    "WebhookError",
    "WebhookVerificationError",
    "WrongPurposeError",
    "__version__",
]
