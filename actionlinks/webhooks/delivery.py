"""The outbox's webhook attempts: find the endpoint, sign, post, judge the answer.

A delivery's destination is a registered endpoint (``ep_…``, read from the
store on every attempt, so a rotation or a disabling takes effect at once) or
an endpoint the service knows by name (``action:<name>``, an action's
``handler_url``). An endpoint that answers 410 Gone is disabled, and what was
still pending for it fails with it.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from actionlinks.errors import ConfigurationError
from actionlinks.outbox.model import Attempt
from actionlinks.outbox.worker import AttemptResult
from actionlinks.webhooks.sender import GONE, WebhookEndpoint, WebhookSender

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    import httpx

    from actionlinks.clock import Clock
    from actionlinks.outbox.model import Delivery
    from actionlinks.outbox.store import Outbox
    from actionlinks.webhooks.endpoints import EndpointRecord, EndpointStore
    from actionlinks.webhooks.sender import JwtSigner

    NamedEndpoints = Callable[[str], WebhookEndpoint | None]

_log = logging.getLogger("actionlinks.webhooks")

CHANNEL = "webhook"
"""The outbox channel of webhook messages."""


def endpoint_of(record: EndpointRecord, *, now: datetime) -> WebhookEndpoint:
    """The sending side of a registered endpoint, with the secrets that sign now.

    Raises:
        ConfigurationError: no secret signs any more (it cannot happen through
            rotation, which always adds one).
    """
    return WebhookEndpoint(
        record.url, secret=record.signing_secrets(now), jwt_header=record.jwt_header
    )


class WebhookDeliverer:
    """Makes one attempt at a webhook delivery for the outbox worker.

    Args:
        endpoints: the registered endpoints.
        outbox: fails what is pending for an endpoint that is gone.
        client: returns the open service's HTTP client.
        clock: the source of time.
        jwt: makes each delivery's JWT header.
        named: the endpoints known by name (``action:<name>``).
    """

    __slots__ = ("_client", "_clock", "_endpoints", "_jwt", "_named", "_outbox")

    def __init__(  # noqa: PLR0913 - keyword-only collaborators
        self,
        *,
        endpoints: EndpointStore,
        outbox: Outbox,
        client: Callable[[], httpx.AsyncClient],
        clock: Clock,
        jwt: JwtSigner | None = None,
        named: NamedEndpoints | None = None,
    ) -> None:
        """Keep the collaborators."""
        self._endpoints = endpoints
        self._outbox = outbox
        self._client = client
        self._clock = clock
        self._jwt = jwt
        self._named = named

    def __repr__(self) -> str:
        """Name the deliverer."""
        return "WebhookDeliverer()"

    def _refused(self, error: str) -> AttemptResult:
        attempt = Attempt(at=self._clock.now(), latency=timedelta(0), error=error)
        return AttemptResult(attempt=attempt, outcome="failed")

    async def __call__(self, delivery: Delivery) -> AttemptResult:
        """Attempt ``delivery`` once."""
        destination = delivery.destination
        if destination.startswith("action:"):
            endpoint = None if self._named is None else self._named(destination)
            if endpoint is None:
                _log.warning(
                    "message %s failed: %s has no handler_url any more; restore it "
                    "and redeliver the message",
                    delivery.message.message_id,
                    destination.removeprefix("action:"),
                )
                return self._refused("no action with this handler_url any more")
        else:
            record = await self._endpoints.get(destination)
            if record is None:
                return self._refused("the endpoint was removed")
            if not record.is_enabled:
                return self._refused(
                    f"the endpoint is disabled ({record.disabled_reason})"
                )
            try:
                endpoint = endpoint_of(record, now=self._clock.now())
            except ConfigurationError as exc:
                return self._refused(f"the endpoint cannot sign: {exc}")
        sender = WebhookSender(self._client(), clock=self._clock, jwt=self._jwt)
        result = await sender.attempt(
            endpoint, message_id=delivery.message.message_id, body=delivery.message.body
        )
        if result.attempt.status == GONE and not destination.startswith("action:"):
            await self.disable(destination, reason="410 Gone")
        return result

    async def disable(self, endpoint_id: str, *, reason: str) -> EndpointRecord | None:
        """Disable an endpoint and fail what was pending for it."""
        now = self._clock.now()
        record = await self._endpoints.update(
            endpoint_id, lambda found: found.disabled(now, reason)
        )
        if record is not None:
            await self._outbox.fail_pending(
                endpoint_id,
                attempt=Attempt(
                    at=now,
                    latency=timedelta(0),
                    error=f"the endpoint is disabled ({reason})",
                ),
            )
        return record
