"""The service's dispatcher: Python handlers, else signed webhooks to the app.

An action with a Python ``handler`` runs it (library mode). An action with a
``handler_url`` announces each use as a Standard Webhooks ``link.used`` event
(and each renewed link as ``link.renewed``), through the HTTP client of the
service that is open at that moment: nothing is bound at start-up, so a
service opened, closed and opened again, or served by several apps, always
sends with a live client.

The ``webhook-id`` of a one-time link's use is derived from its ``jti`` and the
submitted form: the failed attempt and the person's retry of it carry the same
id, so a receiver that did the work but answered late can de-duplicate.

An action with ``delivery = "queued"`` stores its ``link.used`` event in the
outbox instead (destination ``action:<name>``), under the same id, and the
person is told success once it is stored; the outbox worker delivers it.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from actionlinks.clock import format_instant
from actionlinks.errors import ConfigurationError
from actionlinks.webhooks import WebhookEndpoint, WebhookSender, new_message_id

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import httpx

    from actionlinks.actions import Action, Link, Renewer
    from actionlinks.clock import Clock
    from actionlinks.tokens import ActionClaims
    from actionlinks.webhooks.sender import JwtSigner

LINK_USED = "link.used"
LINK_RENEWED = "link.renewed"
NAMED = "action:"
"""The outbox destination of an action's handler URL: ``action:<name>``."""


class Queue(Protocol):
    """Stores an event for later delivery (the service's webhook hub)."""

    async def enqueue(
        self,
        event_type: str,
        payload: dict[str, Any],
        *,
        destinations: Sequence[str],
        message_id: str,
    ) -> object:
        """Store ``payload`` for ``destinations`` under ``message_id``."""
        ...


class ServiceDispatcher:
    """Delivers uses and renewals for a service.

    Args:
        clock: stamps each webhook.
        client: returns the open service's HTTP client (raises
            ``ServiceClosedError`` when the service is closed).
        jwt: makes the JWT header of each delivery.
        queue: returns where queued events are stored.
        mail: returns what mails a renewed link when the action has no
            handler URL.
    """

    __slots__ = ("_client", "_clock", "_endpoints", "_jwt", "_mail", "_queue")

    def __init__(
        self,
        *,
        clock: Clock,
        client: Callable[[], httpx.AsyncClient],
        jwt: JwtSigner | None = None,
        queue: Callable[[], Queue] | None = None,
        mail: Callable[[], Renewer] | None = None,
    ) -> None:
        """Remember how to reach the service's current HTTP client."""
        self._mail = mail
        self._clock = clock
        self._client = client
        self._jwt = jwt
        self._queue = queue
        self._endpoints: dict[tuple[str, str, str], WebhookEndpoint] = {}

    def __repr__(self) -> str:
        """Name the dispatcher."""
        return "ServiceDispatcher()"

    def endpoint(self, action: Action) -> WebhookEndpoint | None:
        """The webhook endpoint of ``action``, or ``None`` without a handler URL.

        Raises:
            ConfigurationError: a handler URL without a valid secret, or not
                https (http only to localhost).
        """
        if action.handler_url is None:
            return None
        key = (action.name, action.handler_url, action.handler_secret or "")
        found = self._endpoints.get(key)
        if found is None:
            if action.handler_secret is None:
                raise ConfigurationError(
                    f"[actions.{action.name}] handler_url needs a handler_secret"
                )
            found = WebhookEndpoint(action.handler_url, secret=action.handler_secret)
            self._endpoints[key] = found
        return found

    async def use(
        self, action: Action, claims: ActionClaims, form: Mapping[str, str]
    ) -> object:
        """Run the Python handler, or announce the use to the handler URL.

        Raises:
            WebhookDeliveryError: the application did not answer 2xx.
            ServiceClosedError: a webhook is due and the service is closed.
        """
        if action.handler is not None:
            return await action.handler(claims, form)
        endpoint = self.endpoint(action)
        if endpoint is None:
            return None
        # One id per submission of a one-time link: the same form resubmitted
        # after a failure keeps it; another form (a different password) is
        # another message. Each use of a multi-use link is its own event.
        submitted = json.dumps(dict(form), sort_keys=True).encode()
        # Queued, a multi-use link's repeated use (the same form) is the same
        # message too: a stranger replaying a one-click POST cannot fill the
        # outbox, and the use it repeats was idempotent anyway.
        keyed = action.one_time or action.delivery == "queued"
        message_id = (
            endpoint.message_id(LINK_USED, claims.token_id, submitted)
            if keyed
            else new_message_id()
        )
        data = {
            "action": claims.action,
            "sub": claims.subject,
            "jti": claims.token_id,
            "issued_at": format_instant(claims.issued_at),
            "expires_at": format_instant(claims.expires_at),
            "data": claims.data,
            "form": dict(form),
        }
        if action.delivery == "queued" and self._queue is not None:
            await self._queue().enqueue(
                LINK_USED,
                data,
                destinations=[NAMED + action.name],
                message_id=message_id,
            )
            return None
        return await self._sender().send(
            endpoint, event_type=LINK_USED, message_id=message_id, data=data
        )

    def renewer(self, action: Action) -> Renewer | None:
        """The action's ``renew``, else an announcement to its handler URL.

        Without either, a mail to where the expired link was mailed.
        """
        if action.renew is not None:
            return action.renew
        endpoint = self.endpoint(action)
        if endpoint is None:
            return None if self._mail is None else self._mail()

        async def announce(link: Link) -> None:
            await self._sender().send(
                endpoint,
                event_type=LINK_RENEWED,
                message_id=endpoint.message_id(LINK_RENEWED, link.claims.token_id),
                data=_renewed(link),
            )

        return announce

    def describe(self, action: Action) -> str | None:
        """What a use of ``action`` does, or ``None`` when nothing happens."""
        if action.handler is not None:
            return "a Python handler"
        endpoint = self.endpoint(action)
        if endpoint is not None:
            return f"a webhook to {endpoint.shown}"
        if action.redirect is not None:
            return "a redirect only"
        return None

    def _sender(self) -> WebhookSender:
        return WebhookSender(self._client(), clock=self._clock, jwt=self._jwt)


def _renewed(link: Link) -> dict[str, Any]:
    return {
        "action": link.claims.action,
        "sub": link.claims.subject,
        "jti": link.claims.token_id,
        "replaces": link.replaces,
        "url": link.url,
        "expires_at": format_instant(link.claims.expires_at),
    }
