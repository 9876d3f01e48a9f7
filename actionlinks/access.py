"""API access tokens: JWTs of their own kind (``al-access+jwt``) with a scope.

Issued by ``actionlinks tokens issue --scope …``, revocable by id, presented as
``Authorization: Bearer <token>``. A link token is never accepted as one, and
their revocations live under their own ledger keys (``access:<jti>``), so that
revoking a link by id can never revoke an access token.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from actionlinks.errors import InvalidArgumentError, TokenRevokedError
from actionlinks.tokens import Purpose, TokenKind, check_text

if TYPE_CHECKING:
    from collections.abc import Iterable

    from actionlinks.clock import Clock
    from actionlinks.ledger import Ledger
    from actionlinks.tokens import ActionClaims, MintedToken, TokenIssuer

SCOPES = (
    "links:read",
    "links:write",
    "mail:read",
    "mail:send",
    "metrics:read",
    "webhooks:read",
    "webhooks:write",
)
"""Every scope the HTTP API knows."""

ACCESS = Purpose(
    name="api",
    ttl=timedelta(days=90),
    max_ttl=timedelta(days=366),
    kind=TokenKind.ACCESS,
)


class AccessTokens:
    """Issues, revokes and authenticates API access tokens.

    Args:
        issuer: signs and verifies the tokens.
        ledger: records revocations.
        clock: the source of time.
    """

    __slots__ = ("_clock", "_issuer", "_ledger")

    def __init__(self, issuer: TokenIssuer, *, ledger: Ledger, clock: Clock) -> None:
        """Bind the issuer and ledger."""
        self._issuer = issuer
        self._ledger = ledger
        self._clock = clock

    def issue(
        self,
        scopes: Iterable[str],
        *,
        subject: str = "api",
        ttl: timedelta | None = None,
    ) -> MintedToken:
        """Issue an access token with ``scopes``.

        Raises:
            InvalidArgumentError: an unknown scope, none at all, or a bad ttl.
        """
        wanted = set(scopes)
        unknown = wanted - set(SCOPES)
        if unknown or not wanted:
            raise InvalidArgumentError(
                f"scopes must be among {', '.join(SCOPES)}; got "
                f"{', '.join(sorted(unknown)) or 'none'}",
                field="scope",
            )
        return self._issuer.mint(ACCESS, subject=subject, ttl=ttl, scopes=wanted)

    async def revoke(self, token_id: str) -> None:
        """Revoke the access token ``token_id``.

        Raises:
            LedgerUnavailableError: the ledger failed.
        """
        check_text(token_id, "the token id", field="jti", limit=64)
        expires_at = self._clock.now() + ACCESS.max_ttl + timedelta(minutes=5)
        await self._ledger.revoke(_ledger_key(token_id), expires_at=expires_at)

    async def authenticate(self, token: str) -> ActionClaims:
        """Verify an access token and that it was not revoked.

        Raises:
            TokenError: invalid, expired, of another kind, or revoked.
            LedgerUnavailableError: the ledger failed.
        """
        claims = self._issuer.verify(token, ACCESS)
        entry = await self._ledger.lookup(_ledger_key(claims.token_id))
        if entry is not None and entry.state == "revoked":
            raise TokenRevokedError(
                "the access token was revoked", token_id=claims.token_id
            )
        return claims


def _ledger_key(token_id: str) -> str:
    return f"access:{token_id}"
