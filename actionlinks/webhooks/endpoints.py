"""Registered webhook endpoints: where messages go and the secrets that sign.

An :class:`EndpointRecord` is a destination URL, the event types it wants
(every type when none are named), the header that carries the JWT, and its
``whsec_`` secrets: the newest signs, and a rotated-out one keeps signing
until its overlap ends, so that a receiver can switch without a gap. A
disabled endpoint (deleted, or answered 410 Gone) gets nothing more.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from actionlinks.errors import InvalidArgumentError

if TYPE_CHECKING:
    from datetime import datetime

EVENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
"""An event type: letters, digits and ``_.:-``, at most 100 characters."""
MAX_EVENT_TYPES = 100
"""The most event types one endpoint subscribes to by name."""
MAX_SECRETS = 5
"""The most secrets that sign at once (rotations within one overlap)."""


def check_event_type(value: object, *, field: str = "event_type") -> str:
    """``value`` if it is a valid event type.

    Raises:
        InvalidArgumentError: anything else.
    """
    if not isinstance(value, str) or not EVENT_TYPE.fullmatch(value):
        raise InvalidArgumentError(
            "an event type is 1-100 letters, digits and _.:- (like 'user.created')",
            field=field,
        )
    return value


def shown_url(url: str) -> str:
    """``url`` with any query replaced by ``?…`` and no credentials."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}" + ("?…" if parts.query else "")


def new_endpoint_id() -> str:
    """A fresh endpoint id (``ep_`` + 96 random bits)."""
    return "ep_" + secrets.token_urlsafe(12)


@dataclass(frozen=True, slots=True)
class EndpointSecret:
    """A ``whsec_`` secret and when it stops signing (``None``: never)."""

    secret: str = field(repr=False)
    until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointRecord:
    """A registered endpoint.

    Attributes:
        endpoint_id: its id (``ep_…``).
        url: where messages are posted.
        event_types: the types it receives; ``None`` for every type.
        jwt_header: the header carrying the JWT; ``None`` for none.
        secrets: newest first.
        created_at: when it was registered.
        disabled_at: when it was disabled, if it was.
        disabled_reason: why (``deleted``, ``410 Gone``).
    """

    endpoint_id: str
    url: str = field(repr=False)
    event_types: tuple[str, ...] | None
    jwt_header: str | None
    secrets: tuple[EndpointSecret, ...]
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    @property
    def shown_url(self) -> str:
        """The URL without its query, which may hold a secret (``?…`` instead)."""
        return shown_url(self.url)

    @property
    def is_enabled(self) -> bool:
        """Whether it still receives messages."""
        return self.disabled_at is None

    def accepts(self, event_type: str) -> bool:
        """Whether it is enabled and subscribed to ``event_type``."""
        return self.is_enabled and (
            self.event_types is None or event_type in self.event_types
        )

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets that sign at ``now``, newest first."""
        return [s.secret for s in self.secrets if s.until is None or s.until > now]

    def rotated(
        self, secret: str, *, now: datetime, overlap_until: datetime
    ) -> EndpointRecord:
        """This endpoint signing with ``secret``, the others until ``overlap_until``.

        Secrets already past their end are dropped, and at most
        ``MAX_SECRETS`` are kept (the oldest go first).
        """
        kept = tuple(
            EndpointSecret(
                s.secret,
                overlap_until if s.until is None else min(s.until, overlap_until),
            )
            for s in self.secrets
            if s.until is None or s.until > now
        )
        return replace(self, secrets=(EndpointSecret(secret), *kept)[:MAX_SECRETS])

    def disabled(self, at: datetime, reason: str) -> EndpointRecord:
        """This endpoint, disabled at ``at`` for ``reason``."""
        if not self.is_enabled:
            return self
        return replace(self, disabled_at=at, disabled_reason=reason)

    def enabled(self) -> EndpointRecord:
        """This endpoint, enabled again."""
        return replace(self, disabled_at=None, disabled_reason=None)


Room = Callable[[list["EndpointRecord"]], None]
"""Checks that the endpoints kept leave room for one more (or one enabled)."""


class EndpointStore(Protocol):
    """Where registered endpoints are kept."""

    async def add(self, endpoint: EndpointRecord, *, room: Room | None = None) -> None:
        """Keep a new endpoint.

        ``room`` is called with every endpoint kept, in the same write as the
        addition and serialised with every other process's: raising, it stops
        the addition (a bound on the endpoints holds across processes).
        """
        ...

    async def get(self, endpoint_id: str) -> EndpointRecord | None:
        """The endpoint ``endpoint_id``, or ``None``."""
        ...

    async def all(self) -> list[EndpointRecord]:
        """Every endpoint, oldest first."""
        ...

    async def update(
        self,
        endpoint_id: str,
        change: Callable[[EndpointRecord], EndpointRecord],
        *,
        room: Room | None = None,
    ) -> EndpointRecord | None:
        """Apply ``change`` to the endpoint atomically; the result, or ``None``.

        ``room`` as for :meth:`add`, called before the change.
        """
        ...
