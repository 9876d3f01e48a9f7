"""Registered webhook endpoints in the PostgreSQL database.

The secrets are stored as written (they sign every delivery): grant the
database to the service's role alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionlinks.stores.rows import ENDPOINT_COLUMNS, endpoint_of, endpoint_values

if TYPE_CHECKING:
    from collections.abc import Callable

    from actionlinks.stores.pg_db import Connection, PgDatabase
    from actionlinks.webhooks.endpoints import EndpointRecord, Room

_COUNTING_LOCK = 0x616C0003  # the advisory lock of writes that count endpoints

SCHEMA = """
CREATE TABLE webhook_endpoints (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    url text NOT NULL,
    event_types text,
    jwt_header text,
    secrets text NOT NULL,
    created_us bigint NOT NULL,
    disabled_us bigint,
    disabled_reason text
);
"""


class PgEndpointStore:
    """Webhook endpoints in the PostgreSQL database.

    Args:
        database: the database (its owner connects, migrates and closes it).
    """

    __slots__ = ("_database",)

    def __init__(self, database: PgDatabase) -> None:
        """Use the endpoint table of ``database``."""
        self._database = database

    def __repr__(self) -> str:
        """Name the database."""
        return f"PgEndpointStore({self._database!r})"

    async def add(self, endpoint: EndpointRecord, *, room: Room | None = None) -> None:
        """Keep a new endpoint (if ``room`` lets it, under a lock of all hosts)."""

        async def write(connection: Connection) -> None:
            if room is not None:
                room(await _all_locked(connection))
            await connection.execute(
                f"INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                *endpoint_values(endpoint),
            )

        await self._database.transaction(write)

    async def get(self, endpoint_id: str) -> EndpointRecord | None:
        """The endpoint ``endpoint_id``, or ``None``."""
        row = await self._database.fetchrow(
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1",
            endpoint_id,
        )
        return None if row is None else endpoint_of(row)

    async def all(self) -> list[EndpointRecord]:
        """Every endpoint, oldest first."""
        rows = await self._database.fetch(
            f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY seq"
        )
        return [endpoint_of(row) for row in rows]

    async def update(
        self,
        endpoint_id: str,
        change: Callable[[EndpointRecord], EndpointRecord],
        *,
        room: Room | None = None,
    ) -> EndpointRecord | None:
        """Apply ``change`` to the locked row in one transaction; the result."""

        async def write(connection: Connection) -> EndpointRecord | None:
            if room is not None:
                room(await _all_locked(connection))
            row = await connection.fetchrow(
                f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 "
                "FOR UPDATE",
                endpoint_id,
            )
            if row is None:
                return None
            changed = change(endpoint_of(row))
            await connection.execute(
                "UPDATE webhook_endpoints SET url = $2, event_types = $3, "
                "jwt_header = $4, secrets = $5, created_us = $6, disabled_us = $7, "
                "disabled_reason = $8 WHERE id = $1",
                endpoint_id,
                *endpoint_values(changed)[1:],
            )
            return changed

        return await self._database.transaction(write)


async def _all_locked(connection: Connection) -> list[EndpointRecord]:
    """Every endpoint, the transaction holding the endpoints' lock.

    One counting write at a time, whichever process it runs in.
    """
    await connection.execute("SELECT pg_advisory_xact_lock($1)", _COUNTING_LOCK)
    rows = await connection.fetch(
        f"SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY seq"
    )
    return [endpoint_of(row) for row in rows]
