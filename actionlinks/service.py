"""The service: settings, keys, store, actions, and everything that runs with them.

A :class:`Service` is built from :class:`~actionlinks.settings.Settings`
without touching the network or the database, so that an application can
declare its actions (with Python handlers) before anything starts. It owns,
behind one async open/close (``async with service``), everything that lives
as long as it runs:

- the store (connected and migrated when it opens, flushed and closed after);
- the HTTP client that delivers handler webhooks (public destinations only,
  unless ``ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE``);
- its background tasks: writing link views and rejection counts behind,
  watching the keys file (every second, and on SIGHUP when asked), so that a
  rotated or retired key reaches every worker within seconds, and the outbox
  worker that delivers stored webhook messages with retries;
- :attr:`Service.webhooks`, the :class:`~actionlinks.webhooks.hub.WebhookHub`
  that registers endpoints and accepts messages;
- :attr:`Service.mail`, the :class:`~actionlinks.mail.hub.MailHub` that writes
  each action's mail and stores it, and the outbox worker that sends it over
  SMTP (a few connections, reused, closed with the service).

``create_app(service)`` only routes requests to it, mounted or standalone. The
service may be opened by several apps at once (it counts) and opened again
after it closed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import TYPE_CHECKING, Self
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import httpx

from actionlinks.access import AccessTokens
from actionlinks.clock import SystemClock
from actionlinks.dispatch import ServiceDispatcher
from actionlinks.errors import (
    ConfigurationError,
    KeyFileError,
    LedgerUnavailableError,
    ServiceClosedError,
)
from actionlinks.keyfile import KeyFile
from actionlinks.mail.parts import MailParts
from actionlinks.outbox import OutboxWorker, RetryPolicy
from actionlinks.registry import ActionRegistry
from actionlinks.stores import store_from_url
from actionlinks.tokens import TokenIssuer
from actionlinks.webhooks import PublicOnlyTransport, is_private_literal
from actionlinks.webhooks.delivery import CHANNEL, WebhookDeliverer
from actionlinks.webhooks.hub import WebhookHub
from actionlinks.webhooks.jwt import mint_webhook_jwt

if TYPE_CHECKING:
    from types import TracebackType

    from actionlinks.clock import Clock
    from actionlinks.keys import KeyRing
    from actionlinks.ledger import Ledger
    from actionlinks.links import LinkStore
    from actionlinks.settings import Settings
    from actionlinks.stores import Store
    from actionlinks.webhooks.sender import WebhookEndpoint

_log = logging.getLogger("actionlinks")

KEYS_CHECK_EVERY = timedelta(seconds=1)
"""How often the keys file is checked for a change (one stat)."""
FLUSH_EVERY = timedelta(seconds=1)
"""How often pending link views and rejection counts are written."""


class Service:
    """Everything a running actionlinks needs, built from settings.

    Args:
        settings: the validated settings.
        clock: the source of time (the system clock by default).
        store: where state lives (by default the one
            ``settings.database_url`` names).
        http_client: the client for handler webhooks (by default one the
            service makes, and closes, while it is open).
        reload_on_sighup: reload the keys file on SIGHUP (``actionlinks serve``
            does; only possible in the main thread).
        log_warnings: log, when it opens, what an operator should hear about
            (actions that do nothing, a config file readable by others).
        deliver: run the outbox worker while open (``actionlinks serve`` and
            library mode do; a one-shot CLI command does not).

    Raises:
        KeyFileError: the keys file is missing or unsafe.
        ConfigurationError: an unsupported database URL or an invalid action
            (a handler URL without a valid secret, plain http to another
            machine, a redirect to an origin that is not allowed), a mail
            template that does not render, an unreadable DKIM key.
    """

    def __init__(  # noqa: PLR0913 - keyword-only collaborators
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        http_client: httpx.AsyncClient | None = None,
        reload_on_sighup: bool = False,
        log_warnings: bool = True,
        deliver: bool = True,
    ) -> None:
        """Load the keys and build the parts; connect nothing."""
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._keyfile = KeyFile(settings.keys_path)
        self.issuer = TokenIssuer(
            self._keyfile.load(),
            issuer=settings.issuer,
            clock=self.clock,
            leeway=settings.leeway,
        )
        self.store: Store = store or store_from_url(
            settings.database_url,
            clock=self.clock,
            ledger_url=settings.ledger_url,
            namespace=settings.issuer,
        )
        self._dispatcher = ServiceDispatcher(
            clock=self.clock,
            client=self._client,
            jwt=self.sign_webhook_jwt,
            queue=lambda: self.webhooks,
            mail=lambda: self.mail.renewal,
        )
        self.registry = ActionRegistry(
            self.issuer,
            ledger=self.store.ledger,
            base_url=settings.base_url,
            clock=self.clock,
            actions=settings.actions,
            journal=self.store.links,
            dispatcher=self._dispatcher,
        )
        self.access = AccessTokens(
            self.issuer, ledger=self.store.ledger, clock=self.clock
        )
        deliverer = WebhookDeliverer(
            endpoints=self.store.endpoints,
            outbox=self.store.outbox,
            client=self._client,
            clock=self.clock,
            jwt=self.sign_webhook_jwt,
            named=self._named_endpoint,
        )
        policy = RetryPolicy(settings.webhook_retry_schedule)
        self._worker = OutboxWorker(
            self.store.outbox,
            deliverer,
            channel=CHANNEL,
            clock=self.clock,
            policy=policy,
        )
        self._deliver = deliver
        self.webhooks = WebhookHub(
            endpoints=self.store.endpoints,
            outbox=self.store.outbox,
            deliverer=deliverer,
            clock=self.clock,
            policy=policy,
            allow_private=settings.webhook_allow_private,
            wake=self._worker.wake,
        )
        mail = MailParts.build(
            settings, store=self.store, registry=self.registry, clock=self.clock
        )
        self.mail = mail.hub
        self._mailer = mail.mailer
        self._mail_worker = mail.worker
        self._given_client = http_client
        self._http: httpx.AsyncClient | None = None
        self._reload_on_sighup = reload_on_sighup
        self._log_warnings = log_warnings
        self._opened = 0
        self._starting: anyio.Lock | None = None
        self._stack: AsyncExitStack | None = None
        self._background: asyncio.Task[None] | None = None
        self.check_actions()

    def __repr__(self) -> str:
        """Name the base URL and the store, never a key."""
        state = "open" if self._opened else "closed"
        return f"Service({self.registry.base_url!r}, {self.store!r}, {state})"

    @property
    def keys(self) -> KeyRing:
        """The key ring in use now."""
        return self.issuer.keys

    @property
    def ledger(self) -> Ledger:
        """The one-time-use ledger."""
        return self.store.ledger

    @property
    def links(self) -> LinkStore:
        """The link status store."""
        return self.store.links

    @property
    def is_open(self) -> bool:
        """Whether the service is open (its store connected, its tasks running)."""
        return self._opened > 0

    def sign_webhook_jwt(
        self, *, audience: str, message_id: str, body: bytes
    ) -> str | None:
        """The JWT header of a delivery, signed by the EdDSA (else ES256) key.

        ``None`` when the key ring has neither (nothing a JWKS could verify).
        """
        now = self.clock.now()
        for algorithm in ("EdDSA", "ES256"):
            try:
                key = self.keys.signing_key(algorithm, now=now)
            except ConfigurationError:
                continue
            return mint_webhook_jwt(
                key,
                issuer=self.settings.issuer,
                audience=audience,
                message_id=message_id,
                body=body,
                now=now,
            )
        return None

    def _named_endpoint(self, destination: str) -> WebhookEndpoint | None:
        name = destination.removeprefix("action:")
        action = self.registry.actions.get(name)
        return None if action is None else self._dispatcher.endpoint(action)

    def describe(self, action: str) -> str | None:
        """What a use of ``action`` does, for people; ``None`` if nothing happens."""
        declared = self.registry.actions.get(action)
        return None if declared is None else self._dispatcher.describe(declared)

    def check_actions(self) -> list[str]:
        """Validate every declared action; warnings about the ones that do nothing.

        Raises:
            ConfigurationError: an invalid handler URL or secret, or a redirect
                to an origin that is not allowed.
        """
        self.mail.check()
        base = urlsplit(self.registry.base_url)
        allowed = {f"{base.scheme}://{base.netloc}", *self.settings.redirect_origins}
        idle = []
        for action in self.registry.actions.values():
            if action.redirect is not None:
                target = urlsplit(action.redirect)
                if f"{target.scheme}://{target.netloc}" not in allowed:
                    raise ConfigurationError(
                        f"[actions.{action.name}] redirect origin is not allowed; "
                        "add it to ACTIONLINKS_REDIRECT_ORIGINS"
                    )
            try:
                does = self._dispatcher.describe(action)
            except ConfigurationError as exc:
                raise ConfigurationError(f"[actions.{action.name}] {exc}") from exc
            host = urlsplit(action.handler_url or "").hostname
            if (
                host
                and self._deliver  # a one-shot CLI command sends nothing
                and is_private_literal(host)
                and not self.settings.webhook_allow_private
            ):
                raise ConfigurationError(
                    f"[actions.{action.name}] handler_url is not a public address; "
                    "allow it with webhook_allow_private = true in actionlinks.toml "
                    "(above any [actions] table) or ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE=1"
                )
            if does is None:
                idle.append(action.name)
        if not idle:
            return []
        return [
            (
                f"actions without a handler, handler_url or redirect: "
                f"{', '.join(idle)}; their links only record a use (see "
                "'handler_url' in the README)"
            )
        ]

    # --- lifecycle --------------------------------------------------------------

    async def __aenter__(self) -> Self:
        """Open the service (see :meth:`open`)."""
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the service (see :meth:`aclose`)."""
        await self.aclose()

    async def open(self) -> None:
        """Connect and migrate the store, start the client and the tasks.

        Opening an open service only counts; each :meth:`open` needs its
        :meth:`aclose`, in the same task (an anyio task group runs the
        background work).

        Raises:
            LedgerUnavailableError: the store cannot be opened.
            ConfigurationError: an invalid action.
        """
        if self._starting is None:  # created here: anyio needs a running loop
            self._starting = anyio.Lock()
        async with self._starting:  # two openers at once start it once
            if self._opened == 0:
                await self._start()
            self._opened += 1

    async def aclose(self) -> None:
        """Stop the tasks, write what is pending, close the client and store."""
        if self._opened == 0:
            return
        self._opened -= 1
        if self._opened == 0:
            stack, self._stack = self._stack, None
            self._http = None
            if stack is not None:
                await stack.aclose()

    async def _start(self) -> None:
        warnings = [*self.settings.warnings, *self.check_actions()]
        for warning in warnings if self._log_warnings else ():
            _log.warning("%s", warning)
        stack = AsyncExitStack()
        try:
            await self.store.connect()
            stack.push_async_callback(self._close_store)
            # Before the store closes: writes of cancelled calls end first.
            stack.push_async_callback(self.registry.settled)
            await self.store.migrate()
            self._http = self._given_client or await stack.enter_async_context(
                self._new_client()
            )
            stack.push_async_callback(self._mailer.aclose)  # after the workers
            stopping = anyio.Event()
            # The background work gets a task of its own, kept and awaited on
            # close: whichever task closes the service last (two apps may share
            # it) can stop it, which a task group entered here would forbid.
            background = asyncio.create_task(self._run_background(stopping))
            background.add_done_callback(_report_background)
            self._background = background
            stack.push_async_callback(self._stop_background, stopping, background)
        except BaseException:
            self._http = None
            await stack.aclose()
            raise
        self._stack = stack

    async def _run_background(self, stopping: anyio.Event) -> None:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._flush_forever)
            tasks.start_soon(self._watch_keys)
            if self._deliver:
                tasks.start_soon(self._worker.run)
                tasks.start_soon(self._mail_worker.run)
            if self._reload_on_sighup:
                if threading.current_thread() is threading.main_thread():
                    tasks.start_soon(self._reload_on_signal)
                else:  # signals reach only the main thread's event loop
                    _log.info("not in the main thread: SIGHUP will not reload keys")
            await stopping.wait()
            if self._deliver:  # attempts in flight finish and are recorded
                async with anyio.create_task_group() as draining:
                    draining.start_soon(self._worker.drain)
                    draining.start_soon(self._mail_worker.drain)
            tasks.cancel_scope.cancel()

    @staticmethod
    async def _stop_background(
        stopping: anyio.Event, background: asyncio.Task[None]
    ) -> None:
        stopping.set()
        with anyio.CancelScope(shield=True):
            try:
                await background
            except asyncio.CancelledError:
                if not background.cancelled():  # not the task's own: ours
                    raise
                # asyncio.run cancels every task at a forced shutdown: done.

    def _new_client(self) -> httpx.AsyncClient:
        transport = PublicOnlyTransport(
            allow_private=self.settings.webhook_allow_private
        )
        return httpx.AsyncClient(
            transport=transport, follow_redirects=False, trust_env=False
        )

    def require_open(self) -> None:
        """Raise unless the service is open.

        Raises:
            ServiceClosedError: it is not (an app mounted without the lifespan
                that opens it answers 503 and logs this).
        """
        if not self.is_open:
            raise ServiceClosedError(
                "the service is not open: open it first (async with service, "
                "e.g. in your app's lifespan)"
            )

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self.require_open()
            raise ServiceClosedError("the service is closing")
        return self._http

    async def _close_store(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.store.aclose()
            except LedgerUnavailableError as exc:
                _log.warning("pending link views were not recorded: %s", exc)

    async def check_health(self) -> None:
        """Return when the store answers.

        Raises:
            LedgerUnavailableError: it does not (or the service is closed), or
                the background work (deliveries, key reload) stopped on an
                error: the process needs a restart.
        """
        background = self._background
        if self._stack is not None and background is not None and background.done():
            raise LedgerUnavailableError(
                "the service's background work (deliveries, key reload) stopped "
                "on an error (see the log); restart the process"
            )
        await self.store.check_health()

    # --- background work ------------------------------------------------------------

    async def _flush_forever(self) -> None:
        while True:
            await anyio.sleep(FLUSH_EVERY.total_seconds())
            try:
                await self.store.links.flush()
            except LedgerUnavailableError as exc:
                _log.warning("pending link views were not recorded: %s", exc)
            except Exception:  # noqa: BLE001 - a bug must not stop the work for good
                _log.exception("writing pending link views failed")

    async def _watch_keys(self) -> None:
        while True:
            await anyio.sleep(KEYS_CHECK_EVERY.total_seconds())
            try:
                if await anyio.to_thread.run_sync(self._keyfile.has_changed):
                    await self.reload_keys()
            except Exception:  # noqa: BLE001 - a bug must not stop the watching
                _log.exception("checking the keys file failed")

    async def _reload_on_signal(self) -> None:
        with anyio.open_signal_receiver(signal.SIGHUP) as signals:
            async for _ in signals:
                _log.info("SIGHUP: reloading %s", self._keyfile.path)
                await self.reload_keys()

    async def reload_keys(self) -> bool:
        """Read the keys file again and use it; whether the new ring is in use.

        A broken file is logged and the keys in use stay.
        """
        try:
            ring = await anyio.to_thread.run_sync(self._keyfile.load)
            self.issuer.use_keys(ring)
        except (KeyFileError, ConfigurationError) as exc:
            _log.error("keys not reloaded, the old ones stay in use: %s", exc)
            return False
        _log.info("keys reloaded from %s: %d keys", self._keyfile.path, len(ring))
        return True


def _report_background(task: asyncio.Task[None]) -> None:
    """Log at once why the background work ended, if it failed."""
    if task.cancelled() or (error := task.exception()) is None:
        return
    causes: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:  # the task group's errors, unwrapped
        found = pending.pop()
        if isinstance(found, BaseExceptionGroup):
            pending.extend(found.exceptions)
        else:
            causes.append(found)
    _log.error(
        "the background work (deliveries, key reload) stopped: %s; /healthz "
        "answers 503 until the process is restarted",
        "; ".join(f"{type(c).__name__}: {c}" for c in causes),
    )
