"""What a token says: its kind, its purpose and its verified claims.

The types here carry no wire names; :mod:`actionlinks.tokens` maps them to and
from the JWS payload.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any

from actionlinks.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from actionlinks.keys import Algorithm

_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


class TokenKind(Enum):
    """The kinds of token, each with its own ``typ``; one never passes as another."""

    LINK = "al-link+jwt"
    ACCESS = "al-access+jwt"

    @property
    def typ(self) -> str:
        """The ``typ`` header value."""
        return self.value


def validate_name(name: str) -> str:
    """Return ``name`` if it is a kebab-case action name.

    Raises:
        ConfigurationError: it is not lowercase kebab-case of 1-64 characters.
    """
    if len(name) > 64 or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"action name {name[:64]!r} must be lowercase kebab-case "
            "(letters, digits, single dashes), at most 64 characters"
        )
    return name


@dataclass(frozen=True, slots=True, kw_only=True)
class Purpose:
    """What a token is for: its action name, lifetimes, kind and state binding.

    Attributes:
        name: the kebab-case action name bound into every token.
        ttl: the default lifetime of a new token.
        max_ttl: the longest lifetime a token may carry; longer ones are refused.
        kind: the token kind (``typ``).
        binds_state: whether every token must carry a state fingerprint.
        ttl_seconds: ``ttl`` in whole seconds, computed once.
        max_seconds: ``max_ttl`` in whole seconds, computed once.
    """

    name: str
    ttl: timedelta
    max_ttl: timedelta
    kind: TokenKind = TokenKind.LINK
    binds_state: bool = False
    ttl_seconds: int = field(init=False, repr=False, compare=False)
    max_seconds: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Validate the name and lifetimes."""
        validate_name(self.name)
        if self.ttl <= timedelta(0) or self.ttl % _SECOND:
            raise ConfigurationError(
                f"{self.name}: ttl must be a positive whole number of seconds"
            )
        if self.max_ttl < self.ttl or self.max_ttl % _SECOND:
            raise ConfigurationError(
                f"{self.name}: max_ttl must be whole seconds and at least ttl"
            )
        object.__setattr__(self, "ttl_seconds", self.ttl // _SECOND)
        object.__setattr__(self, "max_seconds", self.max_ttl // _SECOND)


def instant(seconds: int, microseconds: int = 0) -> datetime:
    """The aware UTC instant ``seconds`` (plus ``microseconds``) after the epoch."""
    return _EPOCH + timedelta(seconds=seconds, microseconds=microseconds)


class ActionClaims:
    """The verified content of a token, in the library's own words. Immutable.

    The issue and expiry instants are kept as the token's integers and made
    into datetimes only when read.
    """

    __slots__ = (
        "_action",
        "_algorithm",
        "_data",
        "_expires",
        "_issued",
        "_issuer",
        "_key_id",
        "_kind",
        "_micros",
        "_scopes",
        "_state_bound",
        "_subject",
        "_token_id",
    )

    def __init__(  # noqa: PLR0913 - the claims, all keyword-only
        self,
        *,
        action: str,
        subject: str,
        token_id: str,
        issued_at: datetime,
        expires_at: datetime,
        issuer: str,
        key_id: str,
        algorithm: Algorithm,
        kind: TokenKind = TokenKind.LINK,
        data: Mapping[str, Any] | None = None,
        is_state_bound: bool = False,
        scopes: frozenset[str] = frozenset(),
    ) -> None:
        """Claims from datetimes (whole microseconds after the epoch)."""
        issued = issued_at - _EPOCH
        self._action = action
        self._subject = subject
        self._token_id = token_id
        self._issued = issued.days * 86_400 + issued.seconds
        self._micros = issued.microseconds
        self._expires = (expires_at - _EPOCH) // _SECOND
        self._issuer = issuer
        self._key_id = key_id
        self._algorithm: Algorithm = algorithm
        self._kind = kind
        self._data = data
        self._state_bound = is_state_bound
        self._scopes = scopes

    @classmethod
    def from_numbers(  # noqa: PLR0913, PLR0917 - positional: the verify hot path
        cls,
        action: str,
        subject: str,
        token_id: str,
        times: tuple[int, int, int],
        issuer: str,
        key: tuple[str, Algorithm],
        kind: TokenKind,
        data: Mapping[str, Any] | None,
        is_state_bound: bool,
        scopes: frozenset[str],
    ) -> ActionClaims:
        """Claims straight from checked token values: ``times`` is (iat, ius, exp)."""
        claims = object.__new__(cls)
        claims._action = action
        claims._subject = subject
        claims._token_id = token_id
        claims._issued, claims._micros, claims._expires = times
        claims._issuer = issuer
        claims._key_id, claims._algorithm = key
        claims._kind = kind
        claims._data = data
        claims._state_bound = is_state_bound
        claims._scopes = scopes
        return claims

    @property
    def action(self) -> str:
        """The action (purpose) name."""
        return self._action

    @property
    def subject(self) -> str:
        """Who the token is for."""
        return self._subject

    @property
    def token_id(self) -> str:
        """The token's unique id (``jti``); not the token."""
        return self._token_id

    @property
    def issued_at(self) -> datetime:
        """When it was minted, to the microsecond."""
        return instant(self._issued, self._micros)

    @property
    def expires_at(self) -> datetime:
        """When it stops being valid (whole seconds)."""
        return instant(self._expires)

    @property
    def issuer(self) -> str:
        """The issuer (``iss``)."""
        return self._issuer

    @property
    def key_id(self) -> str:
        """The ``kid`` of the key that signed it."""
        return self._key_id

    @property
    def algorithm(self) -> Algorithm:
        """The signing algorithm."""
        return self._algorithm

    @property
    def kind(self) -> TokenKind:
        """The token kind."""
        return self._kind

    @property
    def data(self) -> Mapping[str, Any] | None:
        """The small app data it carries, if any."""
        return self._data

    @property
    def is_state_bound(self) -> bool:
        """Whether it carries a fingerprint of the subject's state."""
        return self._state_bound

    @property
    def scopes(self) -> frozenset[str]:
        """What an access token allows."""
        return self._scopes

    def _values(self) -> tuple[object, ...]:
        return (
            self._action,
            self._subject,
            self._token_id,
            self._issued,
            self._micros,
            self._expires,
            self._issuer,
            self._key_id,
            self._algorithm,
            self._kind,
            self._data,
            self._state_bound,
            self._scopes,
        )

    def __eq__(self, other: object) -> bool:
        """Equal when every claim is."""
        if not isinstance(other, ActionClaims):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        """Hash by token id and issuer (equal claims share both)."""
        return hash((self._token_id, self._issuer))

    def __repr__(self) -> str:
        """Every claim, in the library's words."""
        return (
            f"ActionClaims(action={self._action!r}, subject={self._subject!r}, "
            f"token_id={self._token_id!r}, issued_at={self.issued_at!r}, "
            f"expires_at={self.expires_at!r}, issuer={self._issuer!r}, "
            f"key_id={self._key_id!r}, algorithm={self._algorithm!r}, "
            f"kind={self._kind}, data={self._data!r}, "
            f"is_state_bound={self._state_bound}, scopes={set(self._scopes)!r})"
        )
