"""Link status: what the journal of links records and what it can tell.

A link is issued, viewed, used, expired or revoked. Rejected attempts are kept
per link only for links that exist (with a count per reason, so that replaying
one link a million times adds no rows), and for everything else only as counts
per reason and hour: anonymous traffic never grows storage.

Backends implement :class:`LinkStore` (see :mod:`actionlinks.stores`); one
contract suite proves each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from actionlinks.clock import format_instant

if TYPE_CHECKING:
    from datetime import datetime

    from actionlinks.tokens import ActionClaims

LinkState: TypeAlias = Literal["issued", "viewed", "used", "expired", "revoked"]


class LinkJournal(Protocol):
    """Where each link's life is recorded: issued, viewed, used, revoked, rejected.

    Journal failures never fail a redemption; they are logged. Views and
    rejections may be written behind, in batches (see :meth:`LinkStore.flush`).
    """

    async def issued(self, claims: ActionClaims) -> None:
        """A link was minted."""
        ...

    async def viewed(self, token_id: str) -> None:
        """A person opened the link's confirmation page."""
        ...

    async def used(self, token_id: str) -> None:
        """The link was redeemed."""
        ...

    async def released(self, token_id: str) -> None:
        """A redemption's handler failed; the use was undone."""
        ...

    async def revoked(self, token_id: str) -> None:
        """The link was revoked."""
        ...

    async def revoked_subject(
        self, subject: str, *, action: str | None, before: datetime
    ) -> None:
        """Every link of ``subject`` (of one action) issued before was revoked."""
        ...

    async def rejected(self, *, token_id: str | None, reason: str) -> None:
        """An attempt was rejected for ``reason`` (an error ``code``).

        Kept per link only when ``token_id`` names a link that exists;
        otherwise only counted.
        """
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectedAttempts:
    """The rejected attempts of one link for one reason."""

    reason: str
    count: int
    first_at: datetime
    last_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkStatus:
    """What is known about one link."""

    token_id: str
    action: str
    subject: str
    state: LinkState
    issued_at: datetime
    expires_at: datetime
    viewed_at: datetime | None
    used_at: datetime | None
    revoked_at: datetime | None
    rejected: tuple[RejectedAttempts, ...]


class LinkStore(LinkJournal, Protocol):
    """A journal of links that can also answer what it knows about them."""

    async def status(self, token_id: str) -> LinkStatus | None:
        """The status of the link ``token_id``, or ``None`` if unknown."""
        ...

    async def rejection_counts(self, *, since: datetime) -> dict[str, int]:
        """Rejected attempts by reason since ``since`` (to the hour)."""
        ...

    async def flush(self) -> None:
        """Write what is pending (views, rejections)."""
        ...


def link_state(
    *,
    used: bool,
    revoked: bool,
    viewed: bool,
    expires_at: datetime,
    now: datetime,
) -> LinkState:
    """The state a link is in, from what the journal knows of it."""
    if used:
        return "used"
    if revoked:
        return "revoked"
    if expires_at <= now:
        return "expired"
    return "viewed" if viewed else "issued"


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else format_instant(instant)


def status_json(status: LinkStatus) -> dict[str, Any]:
    """The JSON form of a link's status."""
    return {
        "jti": status.token_id,
        "action": status.action,
        "sub": status.subject,
        "state": status.state,
        "issued_at": _iso(status.issued_at),
        "expires_at": _iso(status.expires_at),
        "viewed_at": _iso(status.viewed_at),
        "used_at": _iso(status.used_at),
        "revoked_at": _iso(status.revoked_at),
        "rejected_attempts": [
            {
                "reason": a.reason,
                "count": a.count,
                "first_at": _iso(a.first_at),
                "last_at": _iso(a.last_at),
            }
            for a in status.rejected
        ],
    }
