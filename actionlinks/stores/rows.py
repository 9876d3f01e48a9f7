"""Rows to values and back, shared by the SQL backends (SQLite, PostgreSQL).

Instants are stored as integer microseconds since the epoch, so that a
revocation and a mint in the same second are still told apart, and both
backends read the same columns into the same objects.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from actionlinks.ledger import Issue, LedgerEntry
from actionlinks.outbox.model import Attempt, Delivery, Message
from actionlinks.webhooks.endpoints import EndpointRecord, EndpointSecret

if TYPE_CHECKING:
    from collections.abc import Sequence

Row = tuple[Any, ...]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(instant: datetime) -> int:
    """``instant`` as integer microseconds since the epoch."""
    return (instant - _EPOCH) // timedelta(microseconds=1)


def instant(value: int) -> datetime:
    """Integer microseconds since the epoch as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=value)


def issue_values(issue: Issue | None) -> tuple[str | None, str | None, int | None]:
    """``(subject, action, issued_us)`` for a consume's revocation check, or NULLs."""
    if issue is None:
        return None, None, None
    return issue.subject, issue.action, micros(issue.issued_at)


def ledger_entry(token_id: str, state: str, at: int, expires_at: int) -> LedgerEntry:
    """An entry from its stored state and instants."""
    return LedgerEntry(
        token_id=token_id,
        state="revoked"
        if state == "revoked"
        else "held"
        if state == "held"
        else "used",
        at=instant(at),
        expires_at=instant(expires_at),
    )


def held_entry(  # noqa: PLR0913, PLR0917 - one row's columns, in order
    token_id: str,
    state: str,
    at: int,
    expires_at: int,
    revoked_at: int | None,
    holder: str | None,
    held_until: int | None,
    *,
    now: int,
) -> LedgerEntry | None:
    """The entry as it stands at ``now``: a lapsed hold is no use at all."""
    if holder is None or held_until is None:
        return ledger_entry(token_id, state, at, expires_at)
    if held_until > now:
        return ledger_entry(token_id, "held", at, expires_at)
    if revoked_at is None:
        return None
    return ledger_entry(token_id, "revoked", revoked_at, expires_at)


MESSAGE_COLUMNS = "m.id, m.channel, m.kind, m.body, m.created_us"
DELIVERY_COLUMNS = (
    "d.id, d.destination, d.state, d.attempts, d.next_us, d.schedule_start"
)
ATTEMPT_COLUMNS = "at_us, latency_us, status, response, error"
MESSAGE_STATES = {
    "pending": "EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.message_seq = "
    "m.seq AND d.state = 'pending')",
    "failed": "EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.message_seq = "
    "m.seq AND d.state = 'failed') AND NOT EXISTS (SELECT 1 FROM "
    "outbox_deliveries d WHERE d.message_seq = m.seq AND d.state = 'pending')",
    "delivered": "EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.message_seq = "
    "m.seq) AND NOT EXISTS (SELECT 1 FROM outbox_deliveries d WHERE "
    "d.message_seq = m.seq AND d.state != 'delivered')",
    "none": "NOT EXISTS (SELECT 1 FROM outbox_deliveries d WHERE d.message_seq = "
    "m.seq)",
}
"""SQL conditions on a message ``m`` for each listed state."""


def message_of(row: Sequence[Any]) -> Message:
    """A message from the columns of :data:`MESSAGE_COLUMNS`."""
    return Message(
        message_id=row[0],
        channel=row[1],
        kind=row[2],
        body=bytes(row[3]),
        created_at=instant(row[4]),
    )


def delivery_of(
    row: Sequence[Any], message: Message, history: tuple[Attempt, ...] = ()
) -> Delivery:
    """A delivery from the columns of :data:`DELIVERY_COLUMNS`."""
    return Delivery(
        delivery_id=row[0],
        message=message,
        destination=row[1],
        state=row[2],
        attempts=row[3],
        schedule_start=row[5],
        next_attempt_at=None
        if row[4] is None or row[2] != "pending"
        else instant(row[4]),
        history=history,
    )


def attempt_of(row: Sequence[Any]) -> Attempt:
    """An attempt from the columns of :data:`ATTEMPT_COLUMNS`."""
    return Attempt(
        at=instant(row[0]),
        latency=timedelta(microseconds=row[1]),
        status=row[2],
        response=row[3],
        error=row[4],
    )


def attempt_values(attempt: Attempt) -> tuple[int, int, int | None, str, str | None]:
    """The values of :data:`ATTEMPT_COLUMNS` for ``attempt``."""
    return (
        micros(attempt.at),
        attempt.latency // timedelta(microseconds=1),
        attempt.status,
        attempt.response,
        attempt.error,
    )


ENDPOINT_COLUMNS = (
    "id, url, event_types, jwt_header, secrets, created_us, disabled_us, "
    "disabled_reason"
)


def endpoint_values(endpoint: EndpointRecord) -> tuple[Any, ...]:
    """The values of :data:`ENDPOINT_COLUMNS` for ``endpoint``."""
    return (
        endpoint.endpoint_id,
        endpoint.url,
        None if endpoint.event_types is None else json.dumps(endpoint.event_types),
        endpoint.jwt_header,
        json.dumps(
            [
                [s.secret, None if s.until is None else micros(s.until)]
                for s in endpoint.secrets
            ]
        ),
        micros(endpoint.created_at),
        None if endpoint.disabled_at is None else micros(endpoint.disabled_at),
        endpoint.disabled_reason,
    )


def endpoint_of(row: Sequence[Any]) -> EndpointRecord:
    """An endpoint from the columns of :data:`ENDPOINT_COLUMNS`."""
    return EndpointRecord(
        endpoint_id=row[0],
        url=row[1],
        event_types=None if row[2] is None else tuple(json.loads(row[2])),
        jwt_header=row[3],
        secrets=tuple(
            EndpointSecret(secret, None if until is None else instant(until))
            for secret, until in json.loads(row[4])
        ),
        created_at=instant(row[5]),
        disabled_at=None if row[6] is None else instant(row[6]),
        disabled_reason=row[7],
    )
