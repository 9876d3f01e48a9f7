"""The one path that mints, checks, redeems, renews and revokes links.

:class:`ActionRegistry` holds the declared actions and drives every link through
the same steps: verify, check revocation, consume atomically, dispatch, and
release the use if dispatch fails. Steps that must finish once started (the
consume, a release, the journal) are shielded from cancellation, so a request
cancelled half-way never leaves a link spent without its handler having run.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import anyio

from actionlinks.actions import (
    DEFAULT_ACTIONS,
    LINK_PATH,
    HandlerDispatcher,
    Link,
    Redemption,
    SelectiveRenewer,
    validate_base_url,
)
from actionlinks.beats import while_beating
from actionlinks.errors import (
    ActionLinksError,
    HandlerError,
    InvalidArgumentError,
    LedgerUnavailableError,
    NotRenewableError,
    ServiceClosedError,
    TokenAlreadyUsedError,
    TokenError,
    TokenRevokedError,
    WebhookError,
)
from actionlinks.ledger import ALL_ACTIONS, Hold, Issue
from actionlinks.settle import Settler
from actionlinks.tokens import MAX_SUBJECT_LENGTH, check_text

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from actionlinks.actions import Action, Dispatcher, Renewer
    from actionlinks.clock import Clock
    from actionlinks.errors import TokenExpiredError
    from actionlinks.keys import Algorithm
    from actionlinks.ledger import Ledger
    from actionlinks.links import LinkJournal
    from actionlinks.tokens import ActionClaims, Purpose, TokenIssuer

_log = logging.getLogger("actionlinks")
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Use:
    """A one-time link taken: under ``holder``'s hold, or final (``None``)."""

    holder: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpiredLink:
    """An authentic link that expired: what renewing it needs to know."""

    action: str
    subject: str
    token_id: str
    issued_at: datetime
    expired_at: datetime
    data: Mapping[str, Any] | None = None

    @classmethod
    def from_error(cls, exc: TokenExpiredError) -> ExpiredLink | None:
        """The expired link ``exc`` describes, if its signature was checked."""
        if (
            exc.action is None
            or exc.subject is None
            or exc.token_id is None
            or exc.issued_at is None
        ):
            return None
        return cls(
            action=exc.action,
            subject=exc.subject,
            token_id=exc.token_id,
            issued_at=exc.issued_at,
            expired_at=exc.expired_at,
            data=exc.data,
        )


RENEWAL_WINDOW = timedelta(days=7)
"""How long after it expired a link may still be renewed (once)."""
HOLD_FOR = timedelta(minutes=5)
"""How long a use is held while its handler runs. If the process dies meanwhile,
the link works again after this: a crash never spends a link with nothing done."""
CONFIRM_PAUSE = 2.0
"""The longest pause, in seconds, between tries to confirm a use (from 0.05 s,
doubling): a use is confirmed until its hold is near its end, so a store that
stalls for less than that never lets a used link work again."""
RETENTION = RENEWAL_WINDOW + timedelta(minutes=5)
"""How long the ledger remembers a use or revocation after the link expired:
until renewal can no longer be offered, so a used or revoked link never is."""


class ActionRegistry:
    """Declared actions, and the one path that mints and redeems their links.

    Args:
        issuer: mints and verifies the tokens.
        ledger: records uses and revocations.
        base_url: the public base URL every link is built from.
        clock: the source of time.
        actions: the declarations; :data:`DEFAULT_ACTIONS` when omitted.
        journal: records each link's life (status); optional.
        dispatcher: delivers uses and renewals; the actions' own Python
            callables when omitted.
    """

    __slots__ = (
        "_actions",
        "_base_url",
        "_clock",
        "_dispatcher",
        "_issuer",
        "_journal",
        "_ledger",
        "_purposes",
        "_settler",
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
        dispatcher: Dispatcher | None = None,
    ) -> None:
        """Register the actions."""
        self._issuer = issuer
        self._ledger = ledger
        self._base_url = validate_base_url(base_url)
        self._clock = clock
        self._journal = journal
        self._dispatcher: Dispatcher = dispatcher or HandlerDispatcher()
        self._actions: dict[str, Action] = {}
        self._purposes: dict[str, Purpose] = {}
        self._settler = Settler()
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

    @property
    def dispatcher(self) -> Dispatcher:
        """What delivers uses and renewals."""
        return self._dispatcher

    async def settled(self) -> None:
        """Wait for the writes of cancelled calls to end (before closing stores).

        A use or revocation whose caller was cancelled by asyncio (not anyio)
        finishes its writes in a task of its own.
        """
        await self._settler.wait()

    def declare(self, action: Action) -> None:
        """Declare ``action``, replacing one of the same name."""
        self._actions[action.name] = action
        self._purposes[action.name] = action.purpose

    def get(self, name: str) -> Action:
        """The action called ``name``.

        Raises:
            InvalidArgumentError: no such action (``field`` is ``action``).
        """
        action = self._actions.get(name)
        if action is None:
            known = ", ".join(sorted(self._actions))
            raise InvalidArgumentError(
                f"unknown action {name[:64]!r}; known: {known}", field="action"
            )
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

        When the action revokes previous links, every earlier link of the
        subject for this action is revoked, to the microsecond: the new one
        is the only one that works.

        Args:
            name: the action.
            subject: who the link is for.
            ttl: its lifetime (the action's default when omitted).
            data: small app data carried in the token.
            state: the subject's current state fingerprint; only for actions
                with a ``current_state`` provider, which redemption asks.
            algorithm: the signing algorithm (HS256 by default).

        Raises:
            InvalidArgumentError: unknown action or a bad argument (``field``).
            LedgerUnavailableError: revoking previous links failed.
        """
        action = self.get(name)
        if state is not None and action.current_state is None:
            raise InvalidArgumentError(
                f"{action.name} has no current_state provider, so nothing could "
                "check a state fingerprint: the link would never work",
                field="state",
            )
        minted = self._issuer.mint(
            action.purpose,
            subject=subject,
            ttl=ttl,
            data=data,
            state=state,
            algorithm=algorithm,
        )
        if action.revokes_previous:
            await self._settler.run(self._revoke_earlier(action, minted.claims))
        await self._note(lambda j: j.issued(minted.claims))
        return Link(
            url=self.link_url(minted.token), token=minted.token, claims=minted.claims
        )

    async def _revoke_earlier(self, action: Action, claims: ActionClaims) -> None:
        """Revoke the subject's links of ``action`` issued before ``claims``."""
        before = claims.issued_at
        await self._ledger.revoke_subject(
            claims.subject,
            action=action.name,
            before=before,
            until=before + action.purpose.max_ttl + RETENTION,
        )
        await self._note(
            lambda j: j.revoked_subject(
                claims.subject, action=action.name, before=before
            )
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
            InvalidArgumentError: ``action`` is not declared.
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
                await self._rejected(exc, claims)
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
        admit: Callable[[ActionClaims], Mapping[str, str]] | None = None,
    ) -> Redemption:
        """Verify, consume and dispatch.

        Exactly one of any number of concurrent redemptions of a one-time token
        succeeds. If dispatch fails or is cancelled, the use is released so the
        person can try again (a revocation that came meanwhile stays). The
        consume and the release are shielded from cancellation.

        Args:
            token: the token from the link.
            action: the action it must be for (any declared one when omitted).
            form: the fields the person posted.
            state: the subject's current state fingerprint; asked of the
                action's ``current_state`` when omitted.
            admit: called with the verified claims before anything is
                consumed; returns the fields the handler gets (in place of
                ``form``), or raises to refuse the request (nothing consumed,
                its exception reaches the caller).

        Raises:
            TokenError: rejected, revoked, or already used.
            LedgerUnavailableError: the ledger failed; nothing was consumed.
            HandlerError: dispatch failed; ``released`` tells whether the use
                was undone.
        """
        claims: ActionClaims | None = None
        try:
            claims = await self._verify_with_state(token, action, state)
            declared = self.get(claims.action)
            if admit is not None:
                form = admit(claims)
            if not self._dispatches(declared):
                # Nothing to run: the use is final at once, consumed and
                # stamped in one step that a cancellation cannot split.
                await self._settler.run(self._use_up(declared, claims))
                return Redemption(claims=claims, result=None)
            # Settled: once the consume ran, its answer must reach us, or a
            # cancelled request would leave the link held with nothing done.
            use = await self._settler.run(
                self._take(declared, claims, held=True),
                abandoned=lambda taken: self._undo(claims, taken),
            )
        except TokenError as exc:
            await self._rejected(exc, claims)
            raise
        holder = None if use is None else use.holder
        try:
            result = await self._holding(
                claims.token_id,
                holder,
                self._dispatcher.use,
                declared,
                claims,
                form or {},
            )
        except BaseException as exc:
            if isinstance(exc, Exception):  # logged first: a cancel may come next
                _log.warning(
                    "dispatch of %s failed for link %s; releasing the use: %s",
                    declared.name,
                    claims.token_id,
                    exc,
                    # The app's own handler failed: its traceback helps. A webhook
                    # failure says all there is in its message.
                    exc_info=None if isinstance(exc, WebhookError) else exc,
                )
            released = await self._undo(claims, use)  # a failure is logged there
            if isinstance(exc, Exception):
                raise HandlerError(
                    f"the {declared.name} handler failed", released=released
                ) from exc
            raise
        await self._settler.run(self._used(claims.token_id, holder))
        return Redemption(claims=claims, result=result)

    async def _use_up(self, action: Action, claims: ActionClaims) -> None:
        """Consume a link whose use runs nothing, and stamp it used."""
        await self._take(action, claims, held=False)
        await self._note(lambda j: j.used(claims.token_id))

    async def _used(self, token_id: str, holder: str | None) -> None:
        """Make a held use final and stamp it used."""
        await self._confirm(token_id, holder)
        await self._note(lambda j: j.used(token_id))

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

    async def _take(
        self, action: Action, claims: ActionClaims, *, held: bool
    ) -> _Use | None:
        """Consume a one-time link, unless it or its subject's links are revoked.

        ``held`` while something is dispatched (so that a crash mid-handler
        leaves the link usable once the hold lapses); final at once when the
        action dispatches nothing. ``None``: a multi-use link, nothing taken.
        The caller shields it from cancellation.
        """
        issue = Issue(
            subject=claims.subject, action=claims.action, issued_at=claims.issued_at
        )
        if not action.one_time:
            entry = await self._ledger.standing(
                claims.token_id,
                subject=issue.subject,
                action=issue.action,
                issued_at=issue.issued_at,
            )
            if entry is not None and entry.state == "revoked":
                self._raise_for_entry(claims, entry.state, entry.at)
            return None
        hold = self._new_hold() if held else None
        took = await self._ledger.consume(
            claims.token_id,
            expires_at=claims.expires_at + RETENTION,
            hold=hold,
            issue=issue,
        )
        if not took:
            entry = await self._ledger.lookup(claims.token_id)
            if entry is None:  # its subject's revocation, or a use released since
                if await self._ledger.is_subject_revoked(
                    issue.subject, action=issue.action, issued_at=issue.issued_at
                ):
                    raise TokenRevokedError(
                        "the link was revoked", token_id=claims.token_id
                    )
                self._raise_for_entry(claims, "held", None)
            self._raise_for_entry(claims, entry.state, entry.at)
        return _Use(holder=None if hold is None else hold.holder)

    def _dispatches(self, action: Action) -> bool:
        """Whether a use of ``action`` reaches anything (a handler, a webhook)."""
        try:
            return self._dispatcher.describe(action) is not None
        except ActionLinksError:  # a broken handler URL: dispatch will say so
            return True

    async def _holding(
        self,
        token_id: str,
        holder: str | None,
        work: Callable[..., Awaitable[T]],
        *args: Any,  # noqa: ANN401 - passed through to work
    ) -> T:
        """Run ``work`` while keeping ``holder``'s hold of ``token_id`` alive.

        A handler that runs longer than :data:`HOLD_FOR` still holds the link,
        so no second redemption takes it over; only a dead process lets a hold
        lapse.
        """
        if holder is None:
            return await work(*args)
        lost = False

        async def keep_holding() -> None:
            nonlocal lost
            if lost:
                return
            hold = Hold(holder=holder, until=self._clock.now() + HOLD_FOR)
            try:
                if not await self._ledger.extend(token_id, hold=hold):
                    _log.warning("link %s: its hold was lost", token_id)
                    lost = True
            except LedgerUnavailableError as exc:
                _log.warning("link %s: could not extend its hold: %s", token_id, exc)

        return await while_beating(work(*args), keep_holding, every=HOLD_FOR / 3)

    def _new_hold(self) -> Hold:
        return Hold(
            holder=secrets.token_urlsafe(12), until=self._clock.now() + HOLD_FOR
        )

    async def _confirm(self, token_id: str, holder: str | None) -> None:
        """Make a held use final, trying until the hold nears its end.

        Only if the store stays unavailable that long does the hold lapse
        (logged): the link then works again, as after a crash.
        """
        if holder is None:
            return
        give_up = anyio.current_time() + HOLD_FOR.total_seconds() * 0.9
        pause = 0.05
        while True:
            try:
                await self._ledger.confirm(token_id, holder=holder)
            except ServiceClosedError:
                raise  # closed under it: no use in trying again
            except LedgerUnavailableError as exc:
                if anyio.current_time() + pause < give_up:  # ride out the stall
                    await anyio.sleep(pause)
                    pause = min(pause * 2, CONFIRM_PAUSE)
                    continue
                _log.error(
                    "link %s was used but the use could not be recorded; it works "
                    "again after %s: %s",
                    token_id,
                    HOLD_FOR,
                    exc,
                )
            return

    async def _undo(self, claims: ActionClaims, use: _Use | None) -> bool:
        """Release a one-time use after a failed dispatch; whether it worked."""
        if use is None:
            return True
        return await self._settler.run(self._release(claims.token_id, use.holder))

    async def _release(self, token_id: str, holder: str | None) -> bool:
        try:
            await self._ledger.release(token_id, holder=holder)
        except LedgerUnavailableError as exc:
            _log.error(
                "could not release link %s after its handler failed; it "
                "works again after %s: %s",
                token_id,
                HOLD_FOR,
                exc,
            )
            return False
        await self._note(lambda j: j.released(token_id))
        return True

    @staticmethod
    def _raise_for_entry(
        claims: ActionClaims, state: str, at: datetime | None
    ) -> NoReturn:
        if state == "revoked":
            raise TokenRevokedError("the link was revoked", token_id=claims.token_id)
        if state == "held":
            raise TokenAlreadyUsedError(
                "the link is being used right now",
                token_id=claims.token_id,
                used_at=None,
            )
        when = "" if at is None else f" at {at.astimezone(UTC).isoformat()}"
        raise TokenAlreadyUsedError(
            f"the link was already used{when}", token_id=claims.token_id, used_at=at
        )

    # --- renewal of expired links ---------------------------------------------

    def renewer(self, action: str) -> Renewer | None:
        """What delivers a renewed link of ``action``, if anything can."""
        declared = self._actions.get(action)
        return None if declared is None else self._dispatcher.renewer(declared)

    async def is_renewable(self, expired: ExpiredLink) -> bool:
        """Whether a person may ask for a new link in place of ``expired``.

        Only for a link that expired less than :data:`RENEWAL_WINDOW` ago, was
        never used, never revoked (by id or subject) and never renewed, of an
        action that can deliver a new link.

        Raises:
            LedgerUnavailableError: the ledger failed.
        """
        try:
            await self._check_renewable(expired)
        except NotRenewableError:
            return False
        return True

    async def _check_renewable(self, expired: ExpiredLink) -> Renewer:
        renewer = self.renewer(expired.action)
        if renewer is None:
            raise NotRenewableError("the action cannot deliver a new link")
        if isinstance(renewer, SelectiveRenewer) and not await renewer.renews(
            expired.token_id
        ):
            raise NotRenewableError("nothing can deliver a new link for this one")
        if self._clock.now() >= expired.expired_at + RENEWAL_WINDOW:
            raise NotRenewableError("the link expired too long ago")
        entry = await self._ledger.standing(
            expired.token_id,
            subject=expired.subject,
            action=expired.action,
            issued_at=expired.issued_at,
        )
        if entry is not None:
            raise NotRenewableError(f"the link was {entry.state}")
        if await self._ledger.lookup(_renewal_key(expired.token_id)) is not None:
            raise NotRenewableError("the link was renewed already")
        return renewer

    async def renew(self, expired: ExpiredLink) -> Link:
        """Mint a new link in place of ``expired`` and deliver it, at most once.

        The new link carries the old one's data (and, for a state-bound action,
        the subject's current state). Earlier links of an action that revokes
        them are revoked only once the new link is delivered, so a failed
        delivery leaves the renewal possible.

        Raises:
            NotRenewableError: see :meth:`is_renewable`; also when a concurrent
                request renewed it first.
            LedgerUnavailableError: the ledger failed.
            HandlerError: delivery failed; the renewal may be asked again.
        """
        renewer = await self._check_renewable(expired)
        action = self.get(expired.action)
        marker, hold = _renewal_key(expired.token_id), self._new_hold()
        taken = await self._settler.run(
            self._ledger.consume(
                marker, expires_at=expired.expired_at + RETENTION, hold=hold
            ),
            abandoned=lambda _: self._undo_renewal(marker, hold),
        )
        if not taken:
            raise NotRenewableError("the link was renewed already")
        try:
            link = await self._mint_renewal(action, expired)
            await self._holding(marker, hold.holder, renewer, link)
        except BaseException as exc:
            # The undelivered link is left alone: a late answer may have sent it.
            await self._settler.run(self._undo_renewal(marker, hold))
            if isinstance(exc, Exception):
                _log.warning(
                    "could not deliver a renewed %s link: %s",
                    expired.action,
                    exc,
                    exc_info=None if isinstance(exc, WebhookError) else exc,
                )
                raise HandlerError(
                    f"delivering a new {expired.action} link failed"
                ) from exc
            raise
        await self._settler.run(self._renewed(marker, hold.holder, action, link))
        return link

    async def _renewed(
        self, marker: str, holder: str, action: Action, link: Link
    ) -> None:
        """Make a renewal final; the links it replaces stop working."""
        await self._confirm(marker, holder)
        if action.revokes_previous:
            await self._revoke_earlier(action, link.claims)

    async def _mint_renewal(self, action: Action, expired: ExpiredLink) -> Link:
        state = None
        if action.binds_state and action.current_state is not None:
            state = await action.current_state(expired.subject)
        minted = self._issuer.mint(
            action.purpose, subject=expired.subject, data=expired.data, state=state
        )
        await self._note(lambda j: j.issued(minted.claims))
        return Link(
            url=self.link_url(minted.token),
            token=minted.token,
            claims=minted.claims,
            replaces=expired.token_id,
        )

    async def _undo_renewal(self, marker: str, hold: Hold) -> None:
        try:
            await self._ledger.release(marker, holder=hold.holder)
        except LedgerUnavailableError as exc:
            _log.error(
                "could not undo a failed renewal; it may be asked again after %s: %s",
                HOLD_FOR,
                exc,
            )

    # --- journal ----------------------------------------------------------------

    async def record_rejection(self, exc: TokenError) -> None:
        """Record a rejection found outside :meth:`check` and :meth:`redeem`."""
        await self._rejected(exc, None)

    async def _rejected(self, exc: TokenError, claims: ActionClaims | None) -> None:
        token_id = getattr(exc, "token_id", None)
        if token_id is None and claims is not None:
            token_id = claims.token_id
        _log.info("link rejected (%s): %s", exc.code, exc)
        await self._note(lambda j: j.rejected(token_id=token_id, reason=exc.code))

    async def _note(self, record: Callable[[LinkJournal], Awaitable[None]]) -> None:
        if self._journal is None:
            return
        try:
            await record(self._journal)
        except ServiceClosedError:
            raise  # a programming error, not an outage to ride out
        except LedgerUnavailableError as exc:
            _log.warning("could not record a link event: %s", exc)

    # --- revocation ---------------------------------------------------------------

    def _longest_life(self, action: str | None) -> timedelta:
        if action is not None:
            return self.get(action).purpose.max_ttl
        return max(a.purpose.max_ttl for a in self._actions.values())

    async def revoke(self, token_id: str) -> None:
        """Revoke one link by its token id (never an access token's).

        Raises:
            InvalidArgumentError: not a token id.
            LedgerUnavailableError: the ledger failed.
        """
        check_text(token_id, "the token id", field="jti", limit=64)
        if ":" in token_id:
            raise InvalidArgumentError("not a link's token id", field="jti")
        until = self._clock.now() + self._longest_life(None) + RETENTION
        await self._settler.run(self._revoke(token_id, until))

    async def _revoke(self, token_id: str, until: datetime) -> None:
        await self._ledger.revoke(token_id, expires_at=until)
        await self._note(lambda j: j.revoked(token_id))

    async def revoke_subject(self, subject: str, *, action: str | None = None) -> None:
        """Revoke every link of ``subject`` (of one action) issued before now.

        Links minted after this call returns are not affected, however soon.

        Raises:
            InvalidArgumentError: a bad subject, or ``action`` is not declared.
            LedgerUnavailableError: the ledger failed.
        """
        check_text(subject, "the subject", field="sub", limit=MAX_SUBJECT_LENGTH)
        now = self._clock.now()
        await self._settler.run(
            self._revoke_subject(
                subject, action, before=now, until=now + self._longest_life(action)
            )
        )

    async def _revoke_subject(
        self, subject: str, action: str | None, *, before: datetime, until: datetime
    ) -> None:
        await self._ledger.revoke_subject(
            subject,
            action=ALL_ACTIONS if action is None else action,
            before=before,
            until=until + RETENTION,
        )
        await self._note(
            lambda j: j.revoked_subject(subject, action=action, before=before)
        )


def _renewal_key(token_id: str) -> str:
    return f"renew:{token_id}"
