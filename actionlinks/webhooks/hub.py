"""The webhook service's operations: endpoints, messages, attempts, redelivery.

What the HTTP API and the CLI call. A message is stored with one delivery per
receiving endpoint before :meth:`WebhookHub.send` returns (so an accepted
message survives a crash); the outbox worker delivers it. A message id given
by the sender makes the send idempotent: the same id with the same event
returns the stored message, with another event it is a conflict.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from actionlinks.errors import (
    ConfigurationError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
)
from actionlinks.outbox.channel import ChannelView
from actionlinks.outbox.model import Message
from actionlinks.outbox.store import MAX_LISTED
from actionlinks.webhooks.delivery import CHANNEL
from actionlinks.webhooks.endpoints import (
    MAX_EVENT_TYPES,
    EndpointRecord,
    EndpointSecret,
    check_event_type,
    new_endpoint_id,
)
from actionlinks.webhooks.guard import is_private_literal
from actionlinks.webhooks.sender import WebhookEndpoint, event_body
from actionlinks.webhooks.signing import generate_secret, new_message_id

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from actionlinks.clock import Clock
    from actionlinks.outbox.model import MessageRecord, MessageState
    from actionlinks.outbox.schedule import RetryPolicy
    from actionlinks.outbox.store import Outbox
    from actionlinks.webhooks.delivery import WebhookDeliverer
    from actionlinks.webhooks.endpoints import EndpointStore

ROTATION_OVERLAP = timedelta(hours=24)
"""How long a rotated-out secret keeps signing by default."""
MAX_ENDPOINTS = 1000
"""The most enabled endpoints (every message is matched against them)."""
MAX_KEPT_ENDPOINTS = 10 * MAX_ENDPOINTS
"""The most endpoints kept, disabled ones included (their history stays)."""
MAX_URL = 2048
"""The longest endpoint URL accepted."""
MESSAGE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
RESERVED_PREFIX = "em_"
"""Ids of this form name mail in the shared outbox."""
ENDPOINT_ID = re.compile(r"ep_[A-Za-z0-9_-]{1,40}")


def check_payload(payload: object) -> None:
    """Refuse a payload that is not a JSON object that can be sent as UTF-8.

    Raises:
        InvalidArgumentError: not an object, NaN or Infinity inside, a lone
            surrogate, or nesting too deep to render again.
    """
    if not isinstance(payload, dict):
        raise InvalidArgumentError("'payload' must be a JSON object", field="payload")
    try:
        json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (ValueError, TypeError, RecursionError) as exc:  # UnicodeError is one
        raise InvalidArgumentError(
            "'payload' must be JSON text: no NaN, no lone surrogates", field="payload"
        ) from exc


def check_message_id(value: object) -> str:
    """``value`` if it is a valid message id.

    Raises:
        InvalidArgumentError: anything else.
    """
    if not isinstance(value, str) or not MESSAGE_ID.fullmatch(value):
        raise InvalidArgumentError(
            "a message id is 1-64 letters, digits and _.:-", field="id"
        )
    if value.startswith(RESERVED_PREFIX):
        raise InvalidArgumentError(
            f"message ids starting {RESERVED_PREFIX} are the service's own (mail)",
            field="id",
        )
    return value


class WebhookHub:
    """Registers endpoints and accepts messages for them.

    Args:
        endpoints: the registered endpoints.
        outbox: where messages wait for delivery.
        deliverer: disables endpoints (with what was pending for them).
        clock: the source of time.
        policy: the retry schedule (its first wait delays the first attempt).
        allow_private: accept private and loopback destinations.
        wake: tells this process's worker that a message is waiting.
    """

    __slots__ = (
        "_allow_private",
        "_clock",
        "_deliverer",
        "_endpoints",
        "_outbox",
        "_policy",
        "_view",
        "_wake",
    )

    def __init__(  # noqa: PLR0913 - keyword-only collaborators
        self,
        *,
        endpoints: EndpointStore,
        outbox: Outbox,
        deliverer: WebhookDeliverer,
        clock: Clock,
        policy: RetryPolicy,
        allow_private: bool = False,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        """Keep the collaborators."""
        self._endpoints = endpoints
        self._outbox = outbox
        self._deliverer = deliverer
        self._clock = clock
        self._policy = policy
        self._allow_private = allow_private
        self._wake = wake
        self._view = ChannelView(
            outbox,
            CHANNEL,
            what="message",
            valid=lambda i: MESSAGE_ID.fullmatch(i) is not None,
        )

    def __repr__(self) -> str:
        """Name the hub."""
        return "WebhookHub()"

    # --- endpoints --------------------------------------------------------------

    async def add_endpoint(
        self,
        url: str,
        *,
        event_types: Sequence[str] | None = None,
        jwt_header: str | None = "authorization",
    ) -> tuple[EndpointRecord, str]:
        """Register ``url``; the endpoint and its new ``whsec_`` secret.

        Raises:
            InvalidArgumentError: a bad URL (not https, a private address
                unless allowed), event type or header name; too many endpoints.
        """
        if len(url) > MAX_URL:
            raise InvalidArgumentError(
                f"the URL is over {MAX_URL} characters", field="url"
            )
        secret = generate_secret()
        try:
            endpoint = WebhookEndpoint(url, secret=secret, jwt_header=jwt_header)
        except ConfigurationError as exc:
            field = "jwt_header" if "jwt_header" in str(exc) else "url"
            raise InvalidArgumentError(str(exc), field=field) from exc
        # The host as it will be sent (IDNA dots folded, no brackets).
        if not self._allow_private and is_private_literal(httpx.URL(url).host):
            raise InvalidArgumentError(
                "the URL is not a public address; set webhook_allow_private = "
                "true (or ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE=1) to allow it",
                field="url",
            )
        types = None
        if event_types is not None:
            if not 0 < len(event_types) <= MAX_EVENT_TYPES:
                raise InvalidArgumentError(
                    f"'event_types' lists 1-{MAX_EVENT_TYPES} types (or is left out "
                    "for every type)",
                    field="event_types",
                )
            types = tuple(
                dict.fromkeys(
                    check_event_type(t, field="event_types") for t in event_types
                )
            )
        record = EndpointRecord(
            endpoint_id=new_endpoint_id(),
            url=url,
            event_types=types,
            jwt_header=endpoint.jwt_header,
            secrets=(EndpointSecret(secret),),
            created_at=self._clock.now(),
        )
        # Counted and added in one write, one at a time across processes.
        await self._endpoints.add(record, room=_room_to_add)
        return record, secret

    async def endpoints(self) -> list[EndpointRecord]:
        """Every registered endpoint, oldest first."""
        return await self._endpoints.all()

    async def endpoint(self, endpoint_id: str) -> EndpointRecord:
        """The endpoint ``endpoint_id``.

        Raises:
            NotFoundError: no such endpoint.
        """
        _check_endpoint_id(endpoint_id)
        return _found(await self._endpoints.get(endpoint_id))

    async def rotate(
        self, endpoint_id: str, *, overlap: timedelta = ROTATION_OVERLAP
    ) -> tuple[EndpointRecord, str]:
        """Give the endpoint a new secret; the old ones sign for ``overlap`` more.

        Raises:
            NotFoundError: no such endpoint.
        """
        _check_endpoint_id(endpoint_id)
        secret = generate_secret()
        now = self._clock.now()
        found = await self._endpoints.update(
            endpoint_id,
            lambda record: record.rotated(secret, now=now, overlap_until=now + overlap),
        )
        return _found(found), secret

    async def disable(self, endpoint_id: str) -> EndpointRecord:
        """Disable the endpoint; what was pending for it fails.

        Raises:
            NotFoundError: no such endpoint.
        """
        _check_endpoint_id(endpoint_id)
        return _found(await self._deliverer.disable(endpoint_id, reason="deleted"))

    async def enable(self, endpoint_id: str) -> EndpointRecord:
        """Enable a disabled endpoint again (new messages only).

        Raises:
            NotFoundError: no such endpoint.
            InvalidArgumentError: as many endpoints as allowed are enabled.
        """
        current = await self.endpoint(endpoint_id)
        if current.is_enabled:
            return current
        found = await self._endpoints.update(
            endpoint_id, lambda r: r.enabled(), room=_room_to_enable
        )
        return _found(found)

    # --- messages ---------------------------------------------------------------

    async def send(
        self,
        event_type: str,
        payload: dict[str, Any],
        *,
        endpoint_id: str | None = None,
        message_id: str | None = None,
    ) -> MessageRecord:
        """Store the event for ``endpoint_id``, or every endpoint subscribed to it.

        Returns once it is stored: the worker delivers it.

        Raises:
            InvalidArgumentError: a bad event type, payload or id.
            NotFoundError: no such endpoint.
            ConflictError: a disabled endpoint, or the id of another message.
        """
        check_event_type(event_type)
        check_payload(payload)
        if endpoint_id is not None:
            target = await self.endpoint(endpoint_id)
            if not target.is_enabled:
                raise ConflictError(
                    f"the endpoint is disabled ({target.disabled_reason})",
                    code="endpoint_disabled",
                )
            destinations = [target.endpoint_id]
        else:
            destinations = [
                e.endpoint_id
                for e in await self._endpoints.all()
                if e.accepts(event_type)
            ]
        return await self.enqueue(
            event_type,
            payload,
            destinations=destinations,
            message_id=new_message_id()
            if message_id is None
            else check_message_id(message_id),
        )

    async def enqueue(
        self,
        event_type: str,
        payload: dict[str, Any],
        *,
        destinations: Sequence[str],
        message_id: str,
    ) -> MessageRecord:
        """Store the event for ``destinations`` under ``message_id``.

        Raises:
            ConflictError: the id belongs to another message.
        """
        now = self._clock.now()
        message = Message(
            message_id=message_id,
            channel=CHANNEL,
            kind=event_type,
            body=event_body(event_type, payload, at=now),
            created_at=now,
        )
        found, stored = await self._view.store(
            message, destinations, due_at=now + self._policy.first
        )
        if not stored and (
            found.message.channel != CHANNEL
            or found.message.kind != event_type
            or _canonical(payload_of(found.message)) != _canonical(payload)
        ):
            raise ConflictError(
                "a different message was sent with this id", code="message_exists"
            )
        if stored:
            self._wake()
        return found

    async def message(self, message_id: str) -> MessageRecord:
        """The message, its deliveries and every attempt.

        Raises:
            NotFoundError: no such message.
        """
        return await self._view.read(message_id)

    async def messages(
        self,
        *,
        state: MessageState | None = None,
        limit: int = MAX_LISTED,
        before: str | None = None,
    ) -> list[MessageRecord]:
        """Messages newest first, by state (``failed``: the dead letters).

        Raises:
            InvalidArgumentError: ``before`` is not the id of a message.
        """
        return await self._view.page(state=state, limit=limit, before=before)

    async def redeliver(
        self, message_id: str, *, endpoint_id: str | None = None
    ) -> MessageRecord:
        """Deliver the message again now, under its id.

        To ``endpoint_id``; else to the endpoints it failed for, and when it
        failed for none, to every one again.

        Raises:
            NotFoundError: no such message, or it never went to that endpoint.
            ConflictError: the endpoint is disabled.
        """
        found = await self.message(message_id)
        failed = [d.destination for d in found.deliveries if d.state == "failed"]
        targets = (
            [d.destination for d in found.deliveries if d.destination == endpoint_id]
            if endpoint_id is not None
            else failed or [d.destination for d in found.deliveries]
        )
        if not targets:
            raise NotFoundError(
                "the message never went to this endpoint", what="endpoint"
            )
        for destination in targets:
            record = await self._endpoints.get(destination)
            if record is not None and not record.is_enabled:
                raise ConflictError(
                    f"the endpoint {destination} is disabled "
                    f"({record.disabled_reason})",
                    code="endpoint_disabled",
                )
        await self._outbox.redeliver(
            message_id, destinations=targets, at=self._clock.now()
        )
        self._wake()
        return await self.message(message_id)


def _canonical(value: object) -> str:
    # As JSON text: 1, 1.0 and true are three payloads, though Python's == agrees.
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _check_endpoint_id(endpoint_id: str) -> None:
    if not ENDPOINT_ID.fullmatch(endpoint_id):  # never sent to the store
        raise NotFoundError("no endpoint with this id", what="endpoint")


def _found(record: EndpointRecord | None) -> EndpointRecord:
    if record is None:
        raise NotFoundError("no endpoint with this id", what="endpoint")
    return record


def payload_of(message: Message) -> Any:  # noqa: ANN401 - whatever JSON was sent
    """The ``data`` of a stored webhook message."""
    return json.loads(message.body).get("data")


def _room_to_enable(known: list[EndpointRecord]) -> None:
    """Refuse when as many endpoints as allowed are enabled."""
    if sum(1 for e in known if e.is_enabled) >= MAX_ENDPOINTS:
        raise _no_room()


def _room_to_add(known: list[EndpointRecord]) -> None:
    """Refuse when the endpoints enabled, or kept in all, are at their bound."""
    _room_to_enable(known)
    if len(known) >= MAX_KEPT_ENDPOINTS:
        raise _no_room()


def _no_room() -> InvalidArgumentError:
    return InvalidArgumentError(
        f"a service keeps at most {MAX_ENDPOINTS} enabled endpoints "
        f"({MAX_KEPT_ENDPOINTS} in all)",
        field="url",
    )
