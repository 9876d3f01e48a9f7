"""The outbox in PostgreSQL (see :class:`~actionlinks.outbox.Outbox`).

Workers in every process on every host claim due deliveries with
``FOR UPDATE SKIP LOCKED`` and a lease (a holder and an instant): rows another
transaction is changing are passed over, never waited for, and a claim left by
a killed process lapses with its lease. Claims of one channel take a
transaction-scoped advisory lock while they count the live leases, so the
per-destination bound holds across processes too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionlinks.outbox.model import MessageRecord
from actionlinks.stores.pg_db import rowcount
from actionlinks.stores.rows import (
    ATTEMPT_COLUMNS,
    DELIVERY_COLUMNS,
    MESSAGE_COLUMNS,
    MESSAGE_STATES,
    attempt_of,
    attempt_values,
    delivery_of,
    instant,
    message_of,
    micros,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from datetime import datetime, timedelta

    from actionlinks.clock import Clock
    from actionlinks.outbox.model import (
        Attempt,
        Delivery,
        DeliveryState,
        Message,
        MessageState,
    )
    from actionlinks.stores.pg_db import Connection, PgDatabase

SCHEMA = """
CREATE TABLE outbox_messages (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    channel text NOT NULL,
    kind text NOT NULL,
    body bytea NOT NULL,
    created_us bigint NOT NULL
);
CREATE INDEX outbox_messages_channel ON outbox_messages (channel, seq);
CREATE TABLE outbox_deliveries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_seq bigint NOT NULL REFERENCES outbox_messages (seq),
    destination text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    schedule_start integer NOT NULL DEFAULT 0,
    next_us bigint,
    lease_holder text,
    lease_until_us bigint,
    UNIQUE (message_seq, destination)
);
CREATE INDEX outbox_due ON outbox_deliveries (next_us) WHERE state = 'pending';
CREATE INDEX outbox_destination ON outbox_deliveries (destination)
    WHERE state = 'pending';
CREATE INDEX outbox_leased ON outbox_deliveries (lease_until_us)
    WHERE lease_until_us IS NOT NULL;
CREATE TABLE outbox_attempts (
    delivery_id bigint NOT NULL,
    number integer NOT NULL,
    at_us bigint NOT NULL,
    latency_us bigint NOT NULL,
    status integer,
    response text NOT NULL,
    error text,
    PRIMARY KEY (delivery_id, number)
);
"""

_CLAIM_LOCK = 0x616C0002  # the advisory-lock class of claims; the key: the channel
_ATTEMPT = (
    f"INSERT INTO outbox_attempts (delivery_id, number, {ATTEMPT_COLUMNS}) "
    "SELECT $1::bigint, coalesce(max(number), 0) + 1, $2::bigint, $3::bigint, "
    "$4::integer, $5::text, $6::text FROM outbox_attempts WHERE delivery_id = $1"
)
_DELIVERIES = (
    f"SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries d WHERE d.message_seq = $1 "
    "ORDER BY d.id"
)


class PgOutbox:
    """The outbox's tables in the PostgreSQL database.

    Args:
        database: the database (its owner connects, migrates and closes it).
        clock: decides which deliveries are due and which leases lapsed.
    """

    __slots__ = ("_clock", "_database")

    def __init__(self, database: PgDatabase, *, clock: Clock) -> None:
        """Use the outbox tables of ``database``."""
        self._database = database
        self._clock = clock

    def __repr__(self) -> str:
        """Name the database."""
        return f"PgOutbox({self._database!r})"

    async def enqueue(
        self, message: Message, destinations: Sequence[str], *, due_at: datetime
    ) -> bool:
        """Store ``message`` and its deliveries in one transaction."""

        async def write(connection: Connection) -> bool:
            seq = await connection.fetchval(
                "INSERT INTO outbox_messages (id, channel, kind, body, created_us) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING "
                "RETURNING seq",
                message.message_id,
                message.channel,
                message.kind,
                message.body,
                micros(message.created_at),
            )
            if seq is None:
                return False
            await connection.execute(
                "INSERT INTO outbox_deliveries (message_seq, destination, state, "
                "next_us) SELECT $1, unnest($2::text[]), 'pending', $3",
                seq,
                list(dict.fromkeys(destinations)),
                micros(due_at),
            )
            return True

        return await self._database.transaction(write)

    async def claim(  # noqa: PLR0913 - one claim, several bounds
        self,
        *,
        channel: str,
        holder: str,
        limit: int,
        per_destination: int,
        skip: Collection[str],
        lease: timedelta,
    ) -> list[Delivery]:
        """Lease up to ``limit`` due deliveries to ``holder``."""
        now = self._clock.now()
        now_us, until_us = micros(now), micros(now + lease)

        async def take(connection: Connection) -> list[Delivery]:
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", _CLAIM_LOCK, channel
            )
            # Every worker's claims count, in every process (a dead one's too,
            # until they lapse): the bound is the service's, not one worker's.
            counts: dict[str, int] = {
                row[0]: row[1]
                for row in await connection.fetch(
                    "SELECT destination, count(*) FROM outbox_deliveries WHERE "
                    "lease_until_us > $1 AND state = 'pending' GROUP BY destination",
                    now_us,
                )
            }
            full = [d for d, n in counts.items() if n >= per_destination]
            rows = await connection.fetch(
                f"SELECT {DELIVERY_COLUMNS}, {MESSAGE_COLUMNS} "
                "FROM outbox_deliveries d "
                "JOIN outbox_messages m ON m.seq = d.message_seq "
                "WHERE d.state = 'pending' AND d.next_us <= $1 AND m.channel = $2 "
                "AND (d.lease_until_us IS NULL OR d.lease_until_us <= $1) "
                "AND d.destination <> ALL($3::text[]) "
                "ORDER BY d.next_us LIMIT $4 FOR UPDATE OF d SKIP LOCKED",
                now_us,
                channel,
                [*skip, *full],
                limit * 4,
            )
            taken: list[Delivery] = []
            for row in rows:
                if len(taken) == limit:
                    break
                if counts.get(row[1], 0) >= per_destination:
                    continue
                counts[row[1]] = counts.get(row[1], 0) + 1
                taken.append(delivery_of(row, message_of(row[6:])))
            if taken:
                await connection.execute(
                    "UPDATE outbox_deliveries SET lease_holder = $1, "
                    "lease_until_us = $2 WHERE id = ANY($3::bigint[])",
                    holder,
                    until_us,
                    [d.delivery_id for d in taken],
                )
            return taken

        return await self._database.transaction(take)

    async def extend(
        self, *, holder: str, delivery_ids: Collection[int], lease: timedelta
    ) -> None:
        """Renew ``holder``'s leases on ``delivery_ids``."""
        if delivery_ids:
            await self._database.execute(
                "UPDATE outbox_deliveries SET lease_until_us = $1 WHERE "
                "lease_holder = $2 AND state = 'pending' AND id = ANY($3::bigint[])",
                micros(self._clock.now() + lease),
                holder,
                list(delivery_ids),
            )

    async def release(self, *, holder: str, delivery_ids: Collection[int]) -> None:
        """Give up ``holder``'s leases on ``delivery_ids``."""
        if delivery_ids:
            await self._database.execute(
                "UPDATE outbox_deliveries SET lease_holder = NULL, lease_until_us = "
                "NULL WHERE lease_holder = $1 AND id = ANY($2::bigint[])",
                holder,
                list(delivery_ids),
            )

    async def record(
        self,
        delivery_id: int,
        *,
        holder: str,
        attempt: Attempt,
        state: DeliveryState,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Keep ``attempt``; set the state if ``holder`` still holds the lease."""

        async def write(connection: Connection) -> bool:
            await connection.execute(_ATTEMPT, delivery_id, *attempt_values(attempt))
            changed = await connection.execute(
                "UPDATE outbox_deliveries SET state = $1, attempts = attempts + 1, "
                "next_us = $2, lease_holder = NULL, lease_until_us = NULL "
                "WHERE id = $3 AND lease_holder = $4 AND state = 'pending'",
                state,
                None if next_attempt_at is None else micros(next_attempt_at),
                delivery_id,
                holder,
            )
            return rowcount(changed) == 1

        return await self._database.transaction(write)

    async def read(self, message_id: str) -> MessageRecord | None:
        """The message, its deliveries and every attempt."""

        async def read(connection: Connection) -> MessageRecord | None:
            row = await connection.fetchrow(
                f"SELECT {MESSAGE_COLUMNS}, m.seq FROM outbox_messages m "
                "WHERE m.id = $1",
                message_id,
            )
            if row is None:
                return None
            message = message_of(row)
            deliveries = []
            for found in await connection.fetch(_DELIVERIES, row[5]):
                attempts = await connection.fetch(
                    f"SELECT {ATTEMPT_COLUMNS} FROM outbox_attempts "
                    "WHERE delivery_id = $1 ORDER BY number",
                    found[0],
                )
                history = tuple(attempt_of(a) for a in attempts)
                deliveries.append(delivery_of(found, message, history))
            return MessageRecord(message=message, deliveries=tuple(deliveries))

        # One snapshot: the message and its deliveries as they were together.
        return await self._database.transaction(read)

    async def list(
        self,
        *,
        channel: str,
        state: MessageState | None,
        limit: int,
        before: str | None,
    ) -> list[MessageRecord]:
        """Messages newest first, by state, after the page ending at ``before``."""
        where = ["m.channel = $1"]
        arguments: list[object] = [channel, limit]
        if state is not None:
            where.append(MESSAGE_STATES[state])
        if before is not None:
            arguments.append(before)
            where.append(
                "m.seq < coalesce((SELECT seq FROM outbox_messages WHERE id = $3), 0)"
            )
        clause = " AND ".join(where)

        async def read(connection: Connection) -> list[MessageRecord]:
            rows = await connection.fetch(
                f"SELECT {MESSAGE_COLUMNS}, m.seq FROM outbox_messages m "
                f"WHERE {clause} ORDER BY m.seq DESC LIMIT $2",
                *arguments,
            )
            records = []
            for row in rows:
                message = message_of(row)
                found = await connection.fetch(_DELIVERIES, row[5])
                deliveries = tuple(delivery_of(d, message) for d in found)
                records.append(MessageRecord(message=message, deliveries=deliveries))
            return records

        return await self._database.transaction(read)

    async def redeliver(
        self, message_id: str, *, destinations: Collection[str] | None, at: datetime
    ) -> int:
        """Make the message's deliveries pending again, due at ``at``.

        A delivery being attempted right now (claimed) is left to that attempt.
        """
        return await self._database.execute(
            "UPDATE outbox_deliveries SET state = 'pending', next_us = $1, "
            "schedule_start = attempts, lease_holder = NULL, lease_until_us = NULL "
            "WHERE message_seq = (SELECT seq FROM outbox_messages WHERE id = $2) "
            "AND NOT (state = 'pending' AND coalesce(lease_until_us, 0) > $3) "
            "AND ($4::text[] IS NULL OR destination = ANY($4::text[]))",
            micros(at),
            message_id,
            micros(self._clock.now()),
            None if destinations is None else list(destinations),
        )

    async def fail_pending(self, destination: str, *, attempt: Attempt) -> int:
        """Fail every unclaimed pending delivery to ``destination``."""
        now_us = micros(self._clock.now())

        async def write(connection: Connection) -> int:
            rows = await connection.fetch(
                "SELECT id FROM outbox_deliveries WHERE destination = $1 AND "
                "state = 'pending' AND (lease_until_us IS NULL OR "
                "lease_until_us <= $2) FOR UPDATE SKIP LOCKED",
                destination,
                now_us,
            )
            ids = [row[0] for row in rows]
            if ids:
                values = attempt_values(attempt)
                await connection.executemany(_ATTEMPT, [(i, *values) for i in ids])
                await connection.execute(
                    "UPDATE outbox_deliveries SET state = 'failed', next_us = NULL, "
                    "attempts = attempts + 1 WHERE id = ANY($1::bigint[])",
                    ids,
                )
            return len(ids)

        return await self._database.transaction(write)

    async def next_due(self, channel: str) -> datetime | None:
        """When the soonest unclaimed pending delivery of ``channel`` is due."""
        row = await self._database.fetchrow(
            "SELECT d.next_us FROM outbox_deliveries d JOIN outbox_messages m "
            "ON m.seq = d.message_seq WHERE d.state = 'pending' AND m.channel = $1 "
            "AND (d.lease_until_us IS NULL OR d.lease_until_us <= $2) "
            "ORDER BY d.next_us LIMIT 1",
            channel,
            micros(self._clock.now()),
        )
        return None if row is None else instant(row[0])

    async def purge(self, *, channel: str, before: datetime) -> int:
        """Forget ``channel``'s messages created before ``before``, nothing pending."""

        async def write(connection: Connection) -> int:
            rows = await connection.fetch(
                "SELECT seq FROM outbox_messages m WHERE channel = $1 AND "
                "created_us < $2 AND NOT EXISTS (SELECT 1 FROM outbox_deliveries "
                "d WHERE d.message_seq = m.seq AND d.state = 'pending') "
                "LIMIT 1000 FOR UPDATE SKIP LOCKED",
                channel,
                micros(before),
            )
            seqs = [row[0] for row in rows]
            if seqs:
                await connection.execute(
                    "DELETE FROM outbox_attempts WHERE delivery_id IN (SELECT id "
                    "FROM outbox_deliveries WHERE message_seq = ANY($1::bigint[]))",
                    seqs,
                )
                await connection.execute(
                    "DELETE FROM outbox_deliveries WHERE message_seq = "
                    "ANY($1::bigint[])",
                    seqs,
                )
                await connection.execute(
                    "DELETE FROM outbox_messages WHERE seq = ANY($1::bigint[])", seqs
                )
            return len(seqs)

        return await self._database.transaction(write)
