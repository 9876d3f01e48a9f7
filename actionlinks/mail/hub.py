"""The mail service's operations: mint a link, write its mail, store it to be sent.

What the HTTP API, the CLI and the renewal page call. A mail is rendered from
its action's templates, composed, signed (DKIM, when on) and stored in the
outbox before :meth:`MailHub.send` returns; the outbox worker sends it. Its id
is ``em_`` and the ``jti`` of the link it carries: one mail per link, found
again from the link when a person asks for a new one.

Mail of a list (``list_mail``: the unsubscribe mail, a newsletter) carries
RFC 8058's ``List-Unsubscribe`` (a one-click unsubscribe link),
``List-Unsubscribe-Post`` and ``List-Id``; transactional mail never does.
"""

from __future__ import annotations

import email.parser
import email.policy
from typing import TYPE_CHECKING, Any

import anyio

from actionlinks.clock import human_instant
from actionlinks.errors import (
    ConfigurationError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    NotRenewableError,
)
from actionlinks.mail.delivery import CHANNEL
from actionlinks.mail.message import (
    MAX_LINE,
    check_address,
    compose,
    parse_mailbox,
    to_bytes,
)
from actionlinks.outbox.channel import ChannelView
from actionlinks.outbox.model import Message
from actionlinks.outbox.store import MAX_LISTED

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from datetime import timedelta

    from actionlinks.actions import Action, Link
    from actionlinks.clock import Clock
    from actionlinks.links import LinkStore
    from actionlinks.mail.dkim import DkimSigner
    from actionlinks.mail.templates import MailTemplates, RenderedMail
    from actionlinks.outbox.model import MessageRecord, MessageState
    from actionlinks.outbox.schedule import RetryPolicy
    from actionlinks.outbox.store import Outbox
    from actionlinks.registry import ActionRegistry

MAIL_ID_PREFIX = "em_"
"""A mail's id is this and its link's ``jti``."""
MAX_MAIL_ID = 64
UNSUBSCRIBE = "unsubscribe"
"""The action whose link a list mail's ``List-Unsubscribe`` carries."""
_SAMPLE_URL = "https://example.invalid/a/sample"
_HEADERS = email.parser.BytesHeaderParser(policy=email.policy.default)


class MailHub:
    """Writes each action's mail and stores it for the outbox worker.

    Args:
        registry: mints the links.
        outbox: where mail waits to be sent.
        templates: renders each action's mail.
        sender: the ``From`` (``address`` or ``Name <address>``).
        reply_to: the ``Reply-To`` (the sender when not given).
        clock: the source of time.
        policy: the mail retry schedule (its first wait delays the first try).
        dkim: signs each mail, when DKIM is on.
        wake: tells this process's mail worker that a mail is waiting.
        links: the link status store (a mail whose link is dead is not resent).
    """

    __slots__ = (
        "_clock",
        "_dkim",
        "_links",
        "_list_domain",
        "_outbox",
        "_policy",
        "_registry",
        "_reply_to",
        "_sender",
        "_templates",
        "_view",
        "_wake",
    )

    def __init__(  # noqa: PLR0913 - keyword-only collaborators
        self,
        *,
        registry: ActionRegistry,
        outbox: Outbox,
        templates: MailTemplates,
        sender: str,
        reply_to: str | None,
        clock: Clock,
        policy: RetryPolicy,
        dkim: DkimSigner | None = None,
        wake: Callable[[], None] = lambda: None,
        links: LinkStore | None = None,
    ) -> None:
        """Keep the collaborators."""
        self._registry = registry
        self._outbox = outbox
        self._templates = templates
        self._sender = sender
        self._reply_to = reply_to or sender
        self._list_domain = parse_mailbox(sender)[1].rpartition("@")[2]
        self._clock = clock
        self._policy = policy
        self._dkim = dkim
        self._wake = wake
        self._links = links
        self._view = ChannelView(
            outbox,
            CHANNEL,
            what="mail",
            valid=lambda i: i.startswith(MAIL_ID_PREFIX) and len(i) <= MAX_MAIL_ID,
        )

    def __repr__(self) -> str:
        """Name the hub."""
        return f"MailHub(dkim={self._dkim!r})"

    def check(self) -> None:
        """Check every action's mail, so a broken template stops start-up.

        Each template must compile; rendered with sample data that has every
        key, the text part must put the link on a line of its own and the
        HTML part link to it (a template whose code needs real data, say a
        comparison, is checked so with each request instead).

        Raises:
            ConfigurationError: a missing or malformed template, a mail that
                leaves the link out or cannot be written with these senders,
                or list mail with no one-click unsubscribe action.
        """
        for action in self._registry.actions.values():
            self._templates.compile(action.name)
            context = {**self._context(action, _SAMPLE_URL), "data": _AnyData()}
            try:
                mail = self._templates.render(action.name, context)
            except ConfigurationError:
                mail = None  # it needs real data: checked per request
            if mail is not None:
                _check_link(action, mail, _SAMPLE_URL)
                try:
                    to_bytes(
                        compose(
                            mail,
                            sender=self._sender,
                            to="sample@example.com",
                            now=self._clock.now(),
                            reply_to=self._reply_to,
                        )
                    )
                except InvalidArgumentError as exc:
                    raise ConfigurationError(
                        f"the {action.name} mail cannot be written ({exc}): check "
                        "smtp_from and mail_reply_to"
                    ) from exc
            if action.list_mail and not action.one_click:
                unsubscribe = self._registry.actions.get(UNSUBSCRIBE)
                if unsubscribe is None or not unsubscribe.one_click:
                    raise ConfigurationError(
                        f"[actions.{action.name}] list_mail needs the one-click "
                        f"{UNSUBSCRIBE} action for its List-Unsubscribe header"
                    )

    async def send(
        self,
        action: str,
        *,
        to: str,
        subject: str,
        data: Mapping[str, Any] | None = None,
        ttl: timedelta | None = None,
    ) -> MessageRecord:
        """Mint a link of ``action`` for ``subject`` and store its mail to ``to``.

        Returns once it is stored: the worker sends it.

        Raises:
            InvalidArgumentError: a bad address, action, ttl or data (data
                the action's templates need and do not find).
            LedgerUnavailableError: the store failed.
        """
        check_address(to)
        declared = self._registry.get(action)
        # Rendered once before minting: data the templates cannot use must not
        # cost a link (nor revoke the subject's earlier ones).
        self._render(declared, _SAMPLE_URL, data)
        link = await self._registry.mint(action, subject=subject, ttl=ttl, data=data)
        try:
            return await self.send_link(link, to=to)
        except ConfigurationError:  # the mail could not be written: no link
            with anyio.CancelScope(shield=True):
                await self._registry.revoke(link.claims.token_id)
            raise

    async def send_link(self, link: Link, *, to: str) -> MessageRecord:
        """Store the mail that carries ``link`` to ``to``.

        Raises:
            InvalidArgumentError: a bad address, or data the templates need.
            LedgerUnavailableError: the store failed.
        """
        check_address(to)
        action = self._registry.get(link.claims.action)
        mail = self._render(action, link.url, link.claims.data, link=link)
        _check_link(action, mail, link.url)
        headers = await self._list_headers(action, link)
        now = self._clock.now()
        composed = compose(
            mail,
            sender=self._sender,
            to=to,
            now=now,
            reply_to=self._reply_to,
            headers=headers,
        )
        body = to_bytes(composed)
        if self._dkim is not None:
            try:
                body = self._dkim.sign(body)
            except ConfigurationError as exc:  # the key signed at start: the data
                raise InvalidArgumentError(
                    "the mail cannot be signed with this data", field="data"
                ) from exc
        message_id = MAIL_ID_PREFIX + link.claims.token_id
        message = Message(
            message_id=message_id,
            channel=CHANNEL,
            kind=action.name,
            body=body,
            created_at=now,
        )
        found, stored = await self._view.store(
            message, [to], due_at=now + self._policy.first
        )
        if stored:
            self._wake()
        return found

    async def message(self, message_id: str) -> MessageRecord:
        """The mail, its state and every attempt.

        Raises:
            NotFoundError: no such mail.
        """
        return await self._view.read(message_id)

    async def messages(
        self,
        *,
        state: MessageState | None = None,
        limit: int = MAX_LISTED,
        before: str | None = None,
    ) -> list[MessageRecord]:
        """Mail newest first, by state (``failed``: the dead letters).

        Raises:
            InvalidArgumentError: ``before`` is not the id of a mail.
        """
        return await self._view.page(state=state, limit=limit, before=before)

    async def resend(self, message_id: str) -> MessageRecord:
        """Send the mail again now: the same bytes, ``Message-ID`` and link.

        One being sent right now is left to that attempt.

        Raises:
            NotFoundError: no such mail.
            ConflictError: its link was used (one-time), revoked or expired:
                resending would deliver a dead link; send a new mail.
        """
        await self.message(message_id)
        await self._check_link_lives(message_id.removeprefix(MAIL_ID_PREFIX))
        await self._outbox.redeliver(
            message_id, destinations=None, at=self._clock.now()
        )
        self._wake()
        return await self.message(message_id)

    async def _check_link_lives(self, token_id: str) -> None:
        status = None if self._links is None else await self._links.status(token_id)
        if status is None:  # not journaled: nothing says it is dead
            return
        action = self._registry.actions.get(status.action)
        spent = status.state == "used" and (action is None or action.one_time)
        if spent or status.state in ("revoked", "expired"):
            raise ConflictError(
                f"its link was {status.state}: send a new mail instead",
                code="link_unusable",
            )

    async def recipient(self, token_id: str) -> str | None:
        """Where the mail of link ``token_id`` went, if the service sent one."""
        try:
            found = await self.message(MAIL_ID_PREFIX + token_id)
        except NotFoundError:
            return None
        return next((d.destination for d in found.deliveries), None)

    @property
    def renewal(self) -> MailRenewal:
        """Mails a renewed link to where the expired one went."""
        return MailRenewal(self)

    def _context(
        self,
        action: Action,
        url: str,
        data: Mapping[str, Any] | None = None,
        link: Link | None = None,
    ) -> dict[str, Any]:
        expires_at = (
            self._clock.now() + action.ttl if link is None else link.claims.expires_at
        )
        return {
            "url": url,
            "action": action.name,
            "sub": "" if link is None else link.claims.subject,
            "data": dict(data or {}),
            "expires_at": human_instant(expires_at),
        }

    def _render(
        self,
        action: Action,
        url: str,
        data: Mapping[str, Any] | None,
        *,
        link: Link | None = None,
    ) -> RenderedMail:
        try:
            return self._templates.render(
                action.name, self._context(action, url, data, link)
            )
        except ConfigurationError as exc:  # checked at start: the data lacks a key
            raise InvalidArgumentError(
                f"the {action.name} mail needs data it did not get: {exc}",
                field="data",
            ) from exc

    async def _list_headers(self, action: Action, link: Link) -> dict[str, str]:
        if not action.list_mail:
            return {}
        url = link.url
        if not action.one_click:  # another link unsubscribes from the list
            unsubscribe = await self._registry.mint(
                UNSUBSCRIBE, subject=link.claims.subject
            )
            url = unsubscribe.url
        if len(url) > MAX_LINE - len("List-Unsubscribe: <>"):
            raise InvalidArgumentError(
                "the unsubscribe link is too long for a List-Unsubscribe header; "
                "send less data",
                field="data",
            )
        return {
            "List-Unsubscribe": f"<{url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "List-Id": f"<{action.name}.{self._list_domain}>",
        }


def _check_link(action: Action, mail: RenderedMail, url: str) -> None:
    """The text part has ``url`` on a line of its own, the HTML part links it.

    Raises:
        ConfigurationError: it does not (the action's templates leave it out).
    """
    if url not in (line.strip() for line in mail.text.splitlines()):
        raise ConfigurationError(
            f"the {action.name} mail's body.txt must put {{{{ url }}}} on a line "
            "of its own"
        )
    if url not in mail.html.replace("&amp;", "&"):
        raise ConfigurationError(
            f"the {action.name} mail's body.html must link to {{{{ url }}}}"
        )


class _AnyData(dict[str, Any]):
    """Sample data that has every key, at any depth, rendered as ``sample``."""

    def __getattr__(self, name: str) -> _AnyData:
        if name.startswith("__"):
            raise AttributeError(name)
        return _AnyData()

    def __missing__(self, key: str) -> _AnyData:
        return _AnyData()

    def __call__(self, *_: object, **__: object) -> _AnyData:
        return _AnyData()

    def __str__(self) -> str:
        return "sample"

    def __float__(self) -> float:
        return 0.0

    def __int__(self) -> int:
        return 0

    def __lt__(self, other: object) -> bool:
        return False

    __gt__ = __le__ = __ge__ = __lt__

    def __add__(self, other: object) -> _AnyData:
        return _AnyData()

    __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __add__
    __truediv__ = __rtruediv__ = __mod__ = __rmod__ = __add__


class MailRenewal:
    """Mails a renewed link to the address the expired link was mailed to.

    Only links the service mailed itself can be renewed this way.
    """

    __slots__ = ("_hub",)

    def __init__(self, hub: MailHub) -> None:
        """Renew through ``hub``."""
        self._hub = hub

    def __repr__(self) -> str:
        """Name the renewal."""
        return "MailRenewal()"

    async def renews(self, token_id: str) -> bool:
        """Whether the service mailed link ``token_id`` (so it knows where to)."""
        return await self._hub.recipient(token_id) is not None

    async def __call__(self, link: Link) -> None:
        """Store the mail of ``link`` to where the link it replaces went.

        Raises:
            NotRenewableError: the service never mailed that link.
        """
        to = None if link.replaces is None else await self._hub.recipient(link.replaces)
        if to is None:
            raise NotRenewableError("the expired link was not mailed by the service")
        await self._hub.send_link(link, to=to)


def headers_of(message: Message) -> dict[str, str]:
    """The ``Subject`` and ``Message-ID`` of a stored mail (never its body)."""
    headers = _HEADERS.parsebytes(message.body, headersonly=True)
    return {
        "subject": str(headers.get("Subject", "")),
        "message_id": str(headers.get("Message-ID", "")),
    }
