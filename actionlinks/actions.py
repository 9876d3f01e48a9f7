"""Actions: what a link does, and how a use reaches the application.

An :class:`Action` names a purpose (password reset, e-mail confirmation, …),
its lifetimes, whether a link works once or many times, optional state binding
and what runs when a person confirms. A :class:`Dispatcher` decides how a use
and a renewal are delivered: :class:`HandlerDispatcher` calls the action's
Python callables; the service's dispatcher adds signed webhooks for actions
declared with a ``handler_url``. :class:`~actionlinks.registry.ActionRegistry`
mints and redeems links through one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable
from urllib.parse import urlsplit

from actionlinks.errors import ConfigurationError
from actionlinks.tokens import ActionClaims, Purpose

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    Handler = Callable[[ActionClaims, Mapping[str, str]], Awaitable[object]]
    """Runs with the verified claims and the posted form fields."""
    StateProvider = Callable[[str], Awaitable[str | bytes]]
    """Returns the current state fingerprint of a subject."""
    Renewer = Callable[["Link"], Awaitable[None]]
    """Delivers a freshly minted link to its subject (by mail, by webhook)."""

Delivery = Literal["wait", "queued"]
"""How a use reaches an action's ``handler_url``."""
SECRET_FORMS = frozenset({"password-reset"})
"""Actions whose form carries a secret (a new password): never queued."""

LINK_PATH = "/a/"
_TOKEN_IN_URL = re.compile(r"/a/([^/?#]+)")
_UNSAFE_IN_URL = re.compile(r'[\x00-\x20\x7f"<>\\^`{|}]')


@dataclass(frozen=True, slots=True, kw_only=True)
class Action:
    """A declared action.

    Attributes:
        name: kebab-case name, bound into every token.
        ttl: default link lifetime.
        max_ttl: the longest lifetime a link may be minted with (default: ttl).
        one_time: whether a link works once (otherwise it is idempotent).
        binds_state: whether links must carry a state fingerprint (needs
            ``current_state``, so that redemption can check it).
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
        delivery: how a use reaches the ``handler_url``: ``"wait"`` (the
            person waits for the application's answer; a failure releases the
            use) or ``"queued"`` (the person is told success once the
            ``link.used`` event is stored; the outbox delivers it with
            retries). Added in 0.2.
        list_mail: whether its mail belongs to a list (a newsletter, the
            unsubscribe mail): such mail carries RFC 8058 ``List-Unsubscribe``,
            ``List-Unsubscribe-Post`` and ``List-Id``; transactional mail never.

    Raises:
        ConfigurationError: an invalid name or lifetime, a one-click one-time
            action, or state binding without ``current_state``.
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
    delivery: Delivery = "wait"
    list_mail: bool = False
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
        if self.delivery not in ("wait", "queued"):
            raise ConfigurationError(
                f"{self.name}: delivery must be 'wait' or 'queued'"
            )
        if self.delivery == "queued" and self.name in SECRET_FORMS:
            raise ConfigurationError(
                f"{self.name}: delivery = 'queued' would keep the new password "
                "in the database until delivered; this action must wait"
            )
        if self.binds_state and self.current_state is None:
            raise ConfigurationError(
                f"{self.name}: binds_state needs a current_state provider (in "
                "code), or no redemption could check the state"
            )


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
        list_mail=True,
    ),
)
"""The built-in actions; declarations of the same name replace them."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """A minted link. The repr shows the claims, never the token or URL.

    Attributes:
        replaces: the id of the expired link a renewal minted this one for.
    """

    url: str = field(repr=False)
    token: str = field(repr=False)
    claims: ActionClaims
    replaces: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Redemption:
    """The outcome of a successful redemption."""

    claims: ActionClaims
    result: object


@runtime_checkable
class SelectiveRenewer(Protocol):
    """A renewer that can deliver a new link for some expired links only.

    The mail renewal knows where to send only links the service mailed.
    """

    async def __call__(self, link: Link) -> None:
        """Deliver ``link``, which replaces ``link.replaces``."""
        ...

    async def renews(self, token_id: str) -> bool:
        """Whether a new link can be delivered in place of link ``token_id``."""
        ...


class Dispatcher(Protocol):
    """How a use of an action's link, and a renewed link, reach the application."""

    async def use(
        self, action: Action, claims: ActionClaims, form: Mapping[str, str]
    ) -> object:
        """Deliver one use; raising means it failed (the use is released)."""
        ...

    def renewer(self, action: Action) -> Renewer | None:
        """What delivers a renewed link of ``action``, if anything can."""
        ...

    def describe(self, action: Action) -> str | None:
        """What a use of ``action`` does, for people; ``None`` if nothing."""
        ...


class HandlerDispatcher:
    """Calls the action's own Python ``handler`` and ``renew`` (library mode)."""

    __slots__ = ()

    def __repr__(self) -> str:
        """Name the dispatcher."""
        return "HandlerDispatcher()"

    async def use(
        self, action: Action, claims: ActionClaims, form: Mapping[str, str]
    ) -> object:
        """Run the action's handler, if it has one."""
        if action.handler is None:
            return None
        return await action.handler(claims, form)

    def renewer(self, action: Action) -> Renewer | None:
        """The action's ``renew`` callable."""
        return action.renew

    def describe(self, action: Action) -> str | None:
        """``"a Python handler"``, a redirect, or ``None``."""
        if action.handler is not None:
            return "a Python handler"
        if action.redirect is not None:
            return "a redirect only"
        return None


def validate_base_url(base_url: str) -> str:
    """Return ``base_url`` without a trailing slash if it is an http(s) origin.

    Raises:
        ConfigurationError: another scheme, no host, or a query or fragment.
    """
    try:
        parts = urlsplit(base_url)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"base URL {base_url[:64]!r} is not a URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"base URL {base_url[:64]!r} must be http(s)://host[:port][/path]"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(
            f"base URL {base_url[:64]!r} must not have a query or credentials"
        )
    if _UNSAFE_IN_URL.search(base_url):
        raise ConfigurationError(
            f"base URL {base_url[:64]!r} must not contain spaces, quotes or "
            "control characters (percent-encode them)"
        )
    del port  # read only to validate it
    return base_url.rstrip("/")


def token_from(text: str) -> str:
    """The token in a link URL, or ``text`` itself when it is not a URL."""
    text = text.strip()
    if "://" in text:
        try:
            path = urlsplit(text).path
        except ValueError:
            return text
        found = _TOKEN_IN_URL.search(path + "/")
        if found is not None:
            return found.group(1)
    return text
