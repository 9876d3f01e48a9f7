"""The outbox in the SQLite database (see :class:`~actionlinks.outbox.Outbox`).

Claims take the write lock (``BEGIN IMMEDIATE``), so workers in several
processes never lease the same delivery; a lease is a holder and an instant,
and a claim left by a killed process lapses with it.

Enqueues, claims and records run in the worker thread, never inline (see
:class:`~actionlinks.stores.sqlite_db.SqliteDatabase`): there they overlap the
network waits of the deliveries, where inline they would queue with everything
the event loop does (``bench/delivery.py``: 0.81 of a bare loop, against 0.54).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionlinks.outbox.model import MessageRecord
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
    import sqlite3
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
    from actionlinks.stores.sqlite_db import SqliteDatabase

SCHEMA = """
CREATE TABLE outbox_messages (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE TABLE outbox_deliveries (
    id INTEGER PRIMARY KEY,
    message_seq INTEGER NOT NULL REFERENCES outbox_messages (seq),
    destination TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    schedule_start INTEGER NOT NULL DEFAULT 0,
    next_us INTEGER,
    lease_holder TEXT,
    lease_until_us INTEGER,
    UNIQUE (message_seq, destination)
);
CREATE INDEX outbox_due ON outbox_deliveries (next_us) WHERE state = 'pending';
CREATE INDEX outbox_destination ON outbox_deliveries (destination)
    WHERE state = 'pending';
CREATE INDEX outbox_leased ON outbox_deliveries (lease_until_us)
    WHERE lease_until_us IS NOT NULL;
CREATE TABLE outbox_attempts (
    delivery_id INTEGER NOT NULL,
    number INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
    latency_us INTEGER NOT NULL,
    status INTEGER,
    response TEXT NOT NULL,
    error TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
"""

_MESSAGE = MESSAGE_COLUMNS
_DELIVERY = DELIVERY_COLUMNS
_ATTEMPT = (
    f"INSERT INTO outbox_attempts (delivery_id, number, {ATTEMPT_COLUMNS}) "
    "SELECT ?, coalesce(max(number), 0) + 1, ?, ?, ?, ?, ? "
    "FROM outbox_attempts WHERE delivery_id = ?"
)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SqliteOutbox:
    """The outbox's tables in the SQLite database.

    Args:
        database: the database (its owner connects, migrates and closes it).
        clock: decides which deliveries are due and which leases lapsed.
    """

    __slots__ = ("_clock", "_database")

    def __init__(self, database: SqliteDatabase, *, clock: Clock) -> None:
        """Use the outbox tables of ``database``."""
        self._database = database
        self._clock = clock

    def __repr__(self) -> str:
        """Name the database."""
        return f"SqliteOutbox({self._database!r})"

    async def enqueue(
        self, message: Message, destinations: Sequence[str], *, due_at: datetime
    ) -> bool:
        """Store ``message`` and its deliveries in one transaction."""

        def write(connection: sqlite3.Connection) -> bool:
            cursor = connection.execute(
                "INSERT INTO outbox_messages (id, channel, kind, body, created_us) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (
                    message.message_id,
                    message.channel,
                    message.kind,
                    message.body,
                    micros(message.created_at),
                ),
            )
            if cursor.rowcount == 0:
                return False
            seq = cursor.lastrowid
            connection.executemany(
                "INSERT INTO outbox_deliveries (message_seq, destination, state, "
                "next_us) VALUES (?, ?, 'pending', ?)",
                [(seq, d, micros(due_at)) for d in dict.fromkeys(destinations)],
            )
            return True

        return await self._database.transaction(write, inline=False)

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
        skipped = tuple(skip)

        def take(connection: sqlite3.Connection) -> list[Delivery]:
            # Every worker's claims count, in every process (a dead one's too,
            # until they lapse): the bound is the service's, not one worker's.
            counts: dict[str, int] = dict(
                connection.execute(
                    "SELECT destination, count(*) FROM outbox_deliveries WHERE "
                    "lease_until_us > ? AND state = 'pending' GROUP BY destination",
                    (now_us,),
                ).fetchall()
            )
            # Destinations at their bound are left out of the search itself, so
            # one endpoint's backlog never fills the window others are read in.
            full = {d for d, n in counts.items() if n >= per_destination}
            excluded = tuple({*skipped, *full})
            rows = connection.execute(
                f"SELECT {_DELIVERY}, {_MESSAGE} FROM outbox_deliveries d "
                "JOIN outbox_messages m ON m.seq = d.message_seq "
                "WHERE d.state = 'pending' AND d.next_us <= ? AND m.channel = ? "
                "AND (d.lease_until_us IS NULL OR d.lease_until_us <= ?) "
                f"AND d.destination NOT IN ({_marks(len(excluded))}) "
                "ORDER BY d.next_us LIMIT ?",  # the index's order: no sort
                (now_us, channel, now_us, *excluded, limit * 4),
            ).fetchall()
            taken: list[Delivery] = []
            for row in rows:
                if len(taken) == limit:
                    break
                if counts.get(row[1], 0) >= per_destination:
                    continue
                counts[row[1]] = counts.get(row[1], 0) + 1
                taken.append(delivery_of(row, message_of(row[6:])))
            connection.executemany(
                "UPDATE outbox_deliveries SET lease_holder = ?, lease_until_us = ? "
                "WHERE id = ?",
                [(holder, until_us, d.delivery_id) for d in taken],
            )
            return taken

        return await self._database.transaction(take, inline=False)

    async def extend(
        self, *, holder: str, delivery_ids: Collection[int], lease: timedelta
    ) -> None:
        """Renew ``holder``'s leases on ``delivery_ids``."""
        until_us = micros(self._clock.now() + lease)
        ids = tuple(delivery_ids)
        if ids:
            await self._database.execute(
                "UPDATE outbox_deliveries SET lease_until_us = ? WHERE lease_holder "
                f"= ? AND state = 'pending' AND id IN ({_marks(len(ids))})",
                (until_us, holder, *ids),
            )

    async def release(self, *, holder: str, delivery_ids: Collection[int]) -> None:
        """Give up ``holder``'s leases on ``delivery_ids``."""
        ids = tuple(delivery_ids)
        if ids:
            await self._database.execute(
                "UPDATE outbox_deliveries SET lease_holder = NULL, lease_until_us = "
                f"NULL WHERE lease_holder = ? AND id IN ({_marks(len(ids))})",
                (holder, *ids),
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

        def write(connection: sqlite3.Connection) -> bool:
            _insert_attempt(connection, delivery_id, attempt)
            cursor = connection.execute(
                "UPDATE outbox_deliveries SET state = ?, attempts = attempts + 1, "
                "next_us = ?, lease_holder = NULL, lease_until_us = NULL "
                "WHERE id = ? AND lease_holder = ? AND state = 'pending'",
                (
                    state,
                    None if next_attempt_at is None else micros(next_attempt_at),
                    delivery_id,
                    holder,
                ),
            )
            return cursor.rowcount == 1

        return await self._database.transaction(write, inline=False)

    async def read(self, message_id: str) -> MessageRecord | None:
        """The message, its deliveries and every attempt."""
        row = await self._database.fetchone(
            f"SELECT {_MESSAGE}, m.seq FROM outbox_messages m WHERE m.id = ?",
            (message_id,),
        )
        if row is None:
            return None
        message = message_of(row)
        rows = await self._database.fetchall(
            f"SELECT {_DELIVERY} FROM outbox_deliveries d WHERE d.message_seq = ? "
            "ORDER BY d.id",
            (row[5],),
        )
        deliveries = []
        for found in rows:
            attempts = await self._database.fetchall(
                f"SELECT {ATTEMPT_COLUMNS} FROM "
                "outbox_attempts WHERE delivery_id = ? ORDER BY number",
                (found[0],),
            )
            history = tuple(attempt_of(a) for a in attempts)
            deliveries.append(delivery_of(found, message, history))
        return MessageRecord(message=message, deliveries=tuple(deliveries))

    async def list(
        self,
        *,
        channel: str,
        state: MessageState | None,
        limit: int,
        before: str | None,
    ) -> list[MessageRecord]:
        """Messages newest first, by state, after the page ending at ``before``."""
        where = ["m.channel = ?"]
        parameters: list[object] = [channel]
        if state is not None:
            where.append(MESSAGE_STATES[state])
        if before is not None:
            where.append(
                "m.seq < coalesce((SELECT seq FROM outbox_messages WHERE id = ?), 0)"
            )
            parameters.append(before)
        clause = f"WHERE {' AND '.join(where)}"
        # A rare state may mean reading many rows: in a thread, not the loop.
        rows = await self._database.fetchall_in_thread(
            f"SELECT {_MESSAGE}, m.seq FROM outbox_messages m {clause} "
            "ORDER BY m.seq DESC LIMIT ?",
            (*parameters, limit),
        )
        records = []
        for row in rows:
            message = message_of(row)
            found = await self._database.fetchall(
                f"SELECT {_DELIVERY} FROM outbox_deliveries d WHERE "
                "d.message_seq = ? ORDER BY d.id",
                (row[5],),
            )
            deliveries = tuple(delivery_of(d, message) for d in found)
            records.append(MessageRecord(message=message, deliveries=deliveries))
        return records

    async def redeliver(
        self, message_id: str, *, destinations: Collection[str] | None, at: datetime
    ) -> int:
        """Make the message's deliveries pending again, due at ``at``.

        A delivery being attempted right now (claimed) is left to that attempt.
        """
        wanted = None if destinations is None else tuple(destinations)
        only = "" if wanted is None else f"AND destination IN ({_marks(len(wanted))})"
        now_us = micros(self._clock.now())
        return await self._database.execute(
            "UPDATE outbox_deliveries SET state = 'pending', next_us = ?, "
            "schedule_start = attempts, lease_holder = NULL, lease_until_us = NULL "
            "WHERE message_seq = (SELECT seq FROM outbox_messages WHERE id = ?) "
            "AND NOT (state = 'pending' AND coalesce(lease_until_us, 0) > ?) "
            f"{only}",
            (micros(at), message_id, now_us, *(wanted or ())),
        )

    async def fail_pending(self, destination: str, *, attempt: Attempt) -> int:
        """Fail every unclaimed pending delivery to ``destination``."""
        now_us = micros(self._clock.now())

        def write(connection: sqlite3.Connection) -> int:
            ids = [
                row[0]
                for row in connection.execute(
                    "SELECT id FROM outbox_deliveries WHERE destination = ? AND "
                    "state = 'pending' AND (lease_until_us IS NULL OR "
                    "lease_until_us <= ?)",
                    (destination, now_us),
                )
            ]
            for delivery_id in ids:
                _insert_attempt(connection, delivery_id, attempt)
            connection.executemany(
                "UPDATE outbox_deliveries SET state = 'failed', next_us = NULL, "
                "attempts = attempts + 1 WHERE id = ?",
                [(i,) for i in ids],
            )
            return len(ids)

        return await self._database.transaction(write, inline=False)

    async def next_due(self, channel: str) -> datetime | None:
        """When the soonest unclaimed pending delivery of ``channel`` is due."""
        now_us = micros(self._clock.now())
        row = await self._database.fetchone(
            "SELECT d.next_us FROM outbox_deliveries d JOIN outbox_messages m "
            "ON m.seq = d.message_seq WHERE d.state = 'pending' AND m.channel = ? "
            "AND (d.lease_until_us IS NULL OR d.lease_until_us <= ?) "
            "ORDER BY d.next_us LIMIT 1",
            (channel, now_us),
        )
        return None if row is None else instant(row[0])

    async def purge(self, *, channel: str, before: datetime) -> int:
        """Forget ``channel``'s messages created before ``before``, nothing pending."""

        def write(connection: sqlite3.Connection) -> int:
            seqs = [
                (row[0],)
                for row in connection.execute(
                    "SELECT seq FROM outbox_messages m WHERE channel = ? AND "
                    "created_us < ? AND NOT EXISTS (SELECT 1 FROM outbox_deliveries "
                    "d WHERE d.message_seq = m.seq AND d.state = 'pending') LIMIT 1000",
                    (channel, micros(before)),
                )
            ]
            connection.executemany(
                "DELETE FROM outbox_attempts WHERE delivery_id IN (SELECT id FROM "
                "outbox_deliveries WHERE message_seq = ?)",
                seqs,
            )
            connection.executemany(
                "DELETE FROM outbox_deliveries WHERE message_seq = ?", seqs
            )
            connection.executemany("DELETE FROM outbox_messages WHERE seq = ?", seqs)
            return len(seqs)

        return await self._database.transaction(write, inline=False)


def _insert_attempt(
    connection: sqlite3.Connection, delivery_id: int, attempt: Attempt
) -> None:
    connection.execute(_ATTEMPT, (delivery_id, *attempt_values(attempt), delivery_id))
