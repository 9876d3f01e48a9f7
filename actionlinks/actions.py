"""Actions: what a link does, and redeeming links through one path.

An :class:`Action` names a purpose (password reset, e-mail confirmation, …),
its lifetimes, whether a link works once or many times, optional state binding
and the handler that runs when a person confirms. :class:`ActionRegistry` mints
links for declared actions and redeems them: verify, check revocation, consume
atomically, run the handler, and release the use if the handler fails.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, Protocol
from urllib.parse import urlsplit

from actionlinks.errors import (
    ConfigurationError,
    HandlerError,
    LedgerUnavailableError,
    TokenAlreadyUsedError,
    TokenError,
    TokenRevokedError,
)
from actionlinks.ledger import ALL_ACTIONS
from actionlinks.tokens import MAX_SUBJECT_LENGTH, ActionClaims, Purpose, check_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from actionlinks.clock import Clock
    from actionlinks.keys import Algorithm
    from actionlinks.ledger import Ledger
    from actionlinks.tokens import TokenIssuer

    Handler = Callable[[ActionClaims, Mapping[str, str]], Awaitable[object]]
    """Runs with the verified claims and the posted form fields."""
    StateProvider = Callable[[str], Awaitable[str | bytes]]
    """Returns the current state fingerprint of a subject."""
    Renewer = Callable[["Link"], Awaitable[None]]
    """Delivers a freshly minted link to its subject (by mail, by webhook)."""

LINK_PATH = "/a/"
_log = logging.getLogger("actionlinks")
_TOKEN_IN_URL = re.compile(r"/a/([^/?#]+)")


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """A declared action.

    Attributes:
        name: kebab-case name, bound into every token.
        ttl: default link lifetime.
        max_ttl: the longest lifetime a link may be minted with (default: ttl).
        one_time: whether a link works once (otherwise it is idempotent).
        binds_state: whether links must carry a state fingerprint.
        handler: the coroutine run on redemption (none: redemption only records
            the use).
        current_state: returns a subject's state fingerprint, for state-bound
            links.
        revokes_previous: whether minting a link revokes the subject's earlier
            links of this action.
        handler_url: in service mode, where a signed webhook announces each use
            (a non-2xx answer counts as a handler failure).
        handler_secret: the ``whsec_`` secret that signs those webhooks.
        redirect: where the person goes after success (303); its origin must be
            the base URL's or one of the allowed redirect origins.
        renew: delivers a fresh link when a person asks for one on the expiry
            page; without it (or a handler URL) no new link is offered.
        one_click: whether an RFC 8058 one-click POST (``List-Unsubscribe=
            One-Click``) redeems without the confirmation form.
    """

    name: str
    ttl: timedelta
    max_ttl: timedelta | None = None
    one_time: bool = True
    binds_state: bool = False
    handler: Handler | None = field(default=None, compare=False)
    current_state: StateProvider | None = field(default=None, compare=False)
    revokes_previous: bool = False
    handler_url: str | None = None
    handler_secret: str | None = field(default=None, repr=False, compare=False)
    redirect: str | None = None
    renew: Renewer | None = field(default=None, compare=False)
    one_click: bool = False
    purpose: Purpose = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Validate the declaration and derive the token purpose."""
        purpose = Purpose(
            name=self.name,
            ttl=self.ttl,
            max_ttl=self.ttl if self.max_ttl is None else self.max_ttl,
            binds_state=self.binds_state,
        )
        object.__setattr__(self, "purpose", purpose)
        if self.one_click and self.one_time:
            raise ConfigurationError(
                f"{self.name}: one-click (RFC 8058) actions must be multi-use"
            )


class LinkJournal(Protocol):
    """Where each link's life is recorded: issued, viewed, used, revoked, rejected.

    Journal failures never fail a redemption; they are logged.
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

    async def rejected(
        self, *, token_id: str | None, action: str | None, reason: str
    ) -> None:
        """An attempt was rejected for ``reason`` (an error ``code``)."""
        ...


DEFAULT_ACTIONS: tuple[Action, ...] = (
    Action(
        name="password-reset",
        ttl=timedelta(minutes=30),
        max_ttl=timedelta(hours=2),
        revokes_previous=True,
    ),
    Action(name="email-confirm", ttl=timedelta(hours=24), max_ttl=timedelta(days=7)),
    Action(
        name="magic-signin",
        ttl=timedelta(minutes=15),
        max_ttl=timedelta(hours=1),
        revokes_previous=True,
    ),
    Action(name="invite", ttl=timedelta(days=7), max_ttl=timedelta(days=30)),
    Action(
        name="unsubscribe",
        ttl=timedelta(days=90),
        max_ttl=timedelta(days=365),
        one_time=False,
        one_click=True,
    ),
)
"""The built-in actions; declarations of the same name replace them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A minted link. The repr shows the claims, never the token or URL."""

    url: str = field(repr=False)
    token: str = field(repr=False)
    claims: ActionClaims


@dataclass(frozen=True, slots=True, kw_only=True)
class Redemption:
    """The outcome of a successful redemption."""

    claims: ActionClaims
    result: object


def validate_base_url(base_url: str) -> str:
    """Return ``base_url`` without a trailing slash if it is an http(s) origin.

    Raises:
        ConfigurationError: another scheme, no host, or a query or fragment.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"base URL {base_url!r} must be http(s)://host[…]")
    if parts.query or parts.fragment:
        raise ConfigurationError(f"base URL {base_url!r} must not have a query")
    return base_url.rstrip("/")


def token_from(text: str) -> str:
    """The token in a link URL, or ``text`` itself when it is not a URL."""
    text = text.strip()
    if "://" in text:
        found = _TOKEN_IN_URL.search(urlsplit(text).path + "/")
        if found is not None:
            return found.group(1)
    return text


class ActionRegistry:
    """Declared actions, and the one path that mints and redeems their links.

    Args:
        issuer: mints and verifies the tokens.
        ledger: records uses and revocations.
        base_url: the public base URL every link is built from.
        clock: the source of time.
        actions: the declarations; :data:`DEFAULT_ACTIONS` when omitted.
        journal: records each link's life (status); optional.
    """

    __slots__ = (
        "_actions",
        "_base_url",
        "_clock",
        "_issuer",
        "_journal",
        "_ledger",
        "_purposes",
    )

    def __init__(  # noqa: PLR0913 - all keyword-only collaborators
        self,
        issuer: TokenIssuer,
        *,
        ledger: Ledger,
        base_url: str,
        clock: Clock,
        actions: Iterable[Action] = DEFAULT_ACTIONS,
        journal: LinkJournal | None = None,
    ) -> None:
        """Register the actions."""
        self._issuer = issuer
        self._ledger = ledger
        self._base_url = validate_base_url(base_url)
        self._clock = clock
        self._journal = journal
        self._actions: dict[str, Action] = {}
        self._purposes: dict[str, Purpose] = {}
        for action in actions:
            self.declare(action)

    def __repr__(self) -> str:
        """List the action names."""
        return f"ActionRegistry(actions={sorted(self._actions)!r})"

    @property
    def actions(self) -> Mapping[str, Action]:
        """The declared actions by name."""
        return self._actions

    @property
    def base_url(self) -> str:
        """The public base URL of every link."""
        return self._base_url

    @property
    def issuer(self) -> TokenIssuer:
        """The token issuer."""
        return self._issuer

    def declare(self, action: Action) -> None:
        """Declare ``action``, replacing one of the same name."""
        self._actions[action.name] = action
        self._purposes[action.name] = action.purpose

    def get(self, name: str) -> Action:
        """The action called ``name``.

        Raises:
            ConfigurationError: no such action.
        """
        action = self._actions.get(name)
        if action is None:
            known = ", ".join(sorted(self._actions))
            raise ConfigurationError(f"unknown action {name[:64]!r}; known: {known}")
        return action

    def link_url(self, token: str) -> str:
        """The public URL of the link carrying ``token``."""
        return f"{self._base_url}{LINK_PATH}{token}"

    async def mint(  # noqa: PLR0913 - the optional parts of a link, keyword-only
        self,
        name: str,
        *,
        subject: str,
        ttl: timedelta | None = None,
        data: Mapping[str, Any] | None = None,
        state: str | bytes | None = None,
        algorithm: Algorithm | None = None,
    ) -> Link:
        """Mint a link for action ``name``.

        When the action revokes previous links, the subject's earlier links of
        this action (from earlier seconds) are revoked first.

        Raises:
            ConfigurationError: unknown action or bad arguments.
            LedgerUnavailableError: revoking previous links failed.
        """
        action = self.get(name)
        if action.revokes_previous:
            now = self._clock.now().replace(microsecond=0)
            await self._ledger.revoke_subject(
                subject,
                action=action.name,
                before=now,
                until=now + action.purpose.max_ttl + timedelta(minutes=5),
            )
            await self._note(
                lambda j: j.revoked_subject(subject, action=action.name, before=now)
            )
        minted = self._issuer.mint(
            action.purpose,
            subject=subject,
            ttl=ttl,
            data=data,
            state=state,
            algorithm=algorithm,
        )
        await self._note(lambda j: j.issued(minted.claims))
        return Link(
            url=self.link_url(minted.token), token=minted.token, claims=minted.claims
        )

    def verify(
        self,
        token: str | bytes,
        *,
        action: str | None = None,
        state: str | bytes | None = None,
        ignore_state: bool = False,
    ) -> ActionClaims:
        """Verify a token's signature, lifetime and purpose (no ledger).

        Raises:
            TokenError: the token is rejected (see ``TokenIssuer.verify``).
            ConfigurationError: ``action`` is not declared.
        """
        purpose = self._purposes if action is None else self.get(action).purpose
        return self._issuer.verify(
            token, purpose, state=state, ignore_state=ignore_state
        )

    async def check(
        self,
        token: str | bytes,
        *,
        action: str | None = None,
        state: str | bytes | None = None,
        ignore_state: bool = False,
        view: bool = False,
    ) -> ActionClaims:
        """Verify a token and that it is neither used nor revoked; consume nothing.

        Args:
            token: the token from the link.
            action: the action it must be for (any declared one when omitted).
            state: the subject's current state fingerprint.
            ignore_state: skip the state check (inspection only).
            view: record that a person viewed the link (and record rejections).

        Raises:
            TokenError: rejected, revoked or already used.
            LedgerUnavailableError: the ledger failed.
        """
        claims: ActionClaims | None = None
        try:
            if ignore_state:
                claims = self.verify(token, action=action, ignore_state=True)
            else:
                claims = await self._verify_with_state(token, action, state)
            entry = await self._ledger.standing(
                claims.token_id,
                subject=claims.subject,
                action=claims.action,
                issued_at=claims.issued_at,
            )
            if entry is not None:
                self._raise_for_entry(claims, entry.state, entry.at)
        except TokenError as exc:
            if view:
                await self._rejected(exc, claims, action)
            raise
        if view:
            await self._note(lambda j: j.viewed(claims.token_id))
        return claims

    async def redeem(
        self,
        token: str | bytes,
        *,
        action: str | None = None,
        form: Mapping[str, str] | None = None,
        state: str | bytes | None = None,
    ) -> Redemption:
        """Verify, consume and run the action's handler.

        Exactly one of any number of concurrent redemptions of a one-time token
        succeeds. If the handler raises, the use is released so the person can
        try again. Rejections are recorded in the journal with their reason.

        Args:
            token: the token from the link.
            action: the action it must be for (any declared one when omitted).
            form: the fields the person posted.
            state: the subject's current state fingerprint; asked of the
                action's ``current_state`` when omitted.

        Raises:
            TokenError: rejected, revoked, or already used.
            LedgerUnavailableError: the ledger failed; nothing was consumed.
            HandlerError: the handler raised; the use was released.
        """
        claims: ActionClaims | None = None
        try:
            claims = await self._verify_with_state(token, action, state)
            declared = self.get(claims.action)
            await self._check_revocation(claims)
            await self._take(declared, claims)
        except TokenError as exc:
            await self._rejected(exc, claims, action)
            raise
        redemption = await self._dispatch(declared, claims, form or {})
        await self._note(lambda j: j.used(claims.token_id))
        return redemption

    async def _verify_with_state(
        self, token: str | bytes, action: str | None, state: str | bytes | None
    ) -> ActionClaims:
        claims = self.verify(token, action=action, ignore_state=True)
        declared = self.get(claims.action)
        if not (claims.is_state_bound or declared.binds_state):
            return claims
        if state is None and declared.current_state is not None:
            state = await declared.current_state(claims.subject)
        return self.verify(token, action=claims.action, state=state)

    async def _take(self, action: Action, claims: ActionClaims) -> None:
        if action.one_time:
            expires_at = claims.expires_at + timedelta(minutes=5)
            if not await self._ledger.consume(claims.token_id, expires_at=expires_at):
                entry = await self._ledger.lookup(claims.token_id)
                if entry is None:
                    self._raise_for_entry(claims, "used", None)
                self._raise_for_entry(claims, entry.state, entry.at)
        else:
            entry = await self._ledger.lookup(claims.token_id)
            if entry is not None and entry.state == "revoked":
                self._raise_for_entry(claims, entry.state, entry.at)

    async def _dispatch(
        self, action: Action, claims: ActionClaims, form: Mapping[str, str]
    ) -> Redemption:
        if action.handler is None:
            return Redemption(claims=claims, result=None)
        try:
            result = await action.handler(claims, form)
        except BaseException as exc:
            if action.one_time:
                await self._ledger.release(claims.token_id)
                await self._note(lambda j: j.released(claims.token_id))
            if isinstance(exc, Exception):
                _log.warning(
                    "handler of %s failed for link %s; use released",
                    action.name,
                    claims.token_id,
                    exc_info=exc,
                )
                raise HandlerError(
                    f"the {action.name} handler failed; the link can be used again"
                ) from exc
            raise
        return Redemption(claims=claims, result=result)

    async def _check_revocation(self, claims: ActionClaims) -> None:
        if await self._ledger.is_subject_revoked(
            claims.subject, action=claims.action, issued_at=claims.issued_at
        ):
            raise TokenRevokedError("the link was revoked", token_id=claims.token_id)

    @staticmethod
    def _raise_for_entry(
        claims: ActionClaims, state: str, at: datetime | None
    ) -> NoReturn:
        if state == "revoked":
            raise TokenRevokedError("the link was revoked", token_id=claims.token_id)
        when = "" if at is None else f" at {at.astimezone(UTC).isoformat()}"
        raise TokenAlreadyUsedError(
            f"the link was already used{when}", token_id=claims.token_id, used_at=at
        )

    async def record_rejection(
        self, exc: TokenError, *, action: str | None = None
    ) -> None:
        """Record a rejection found outside :meth:`check` and :meth:`redeem`."""
        await self._rejected(exc, None, action)

    async def _rejected(
        self, exc: TokenError, claims: ActionClaims | None, action: str | None
    ) -> None:
        token_id = getattr(exc, "token_id", None)
        if token_id is None and claims is not None:
            token_id = claims.token_id
        _log.info("link rejected (%s): %s", exc.code, exc)
        name = claims.action if claims is not None else action
        await self._note(
            lambda j: j.rejected(token_id=token_id, action=name, reason=exc.code)
        )

    async def _note(self, record: Callable[[LinkJournal], Awaitable[None]]) -> None:
        if self._journal is None:
            return
        try:
            await record(self._journal)
        except LedgerUnavailableError as exc:
            _log.warning("could not record a link event: %s", exc)

    async def revoke(self, token_id: str) -> None:
        """Revoke one link by its token id.

        Raises:
            LedgerUnavailableError: the ledger failed.
        """
        check_text(token_id, "the token id", limit=64)
        longest = max(a.purpose.max_ttl for a in self._actions.values())
        await self._ledger.revoke(
            token_id, expires_at=self._clock.now() + longest + timedelta(minutes=5)
        )
        await self._note(lambda j: j.revoked(token_id))

    async def revoke_subject(self, subject: str, *, action: str | None = None) -> None:
        """Revoke every link of ``subject`` (of one action) issued before now.

        Raises:
            ConfigurationError: ``action`` is not declared.
            LedgerUnavailableError: the ledger failed.
        """
        check_text(subject, "the subject", limit=MAX_SUBJECT_LENGTH)
        if action is None:
            longest = max(a.purpose.max_ttl for a in self._actions.values())
        else:
            longest = self.get(action).purpose.max_ttl
        now = self._clock.now()
        await self._ledger.revoke_subject(
            subject,
            action=ALL_ACTIONS if action is None else action,
            before=now,
            until=now + longest + timedelta(minutes=5),
        )
        await self._note(
            lambda j: j.revoked_subject(subject, action=action, before=now)
        )
