"""Registered webhook endpoints in the SQLite database.

The secrets are stored as written (they sign every delivery); the database
file is private (mode 0600) for that reason among others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionlinks.stores.rows import ENDPOINT_COLUMNS, endpoint_of, endpoint_values

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Callable

    from actionlinks.stores.sqlite_db import SqliteDatabase
    from actionlinks.webhooks.endpoints import EndpointRecord, Room

SCHEMA = """
CREATE TABLE webhook_endpoints (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    event_types TEXT,
    jwt_header TEXT,
    secrets TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    disabled_us INTEGER,
    disabled_reason TEXT
);
"""

_COLUMNS = ENDPOINT_COLUMNS


class SqliteEndpointStore:
    """Webhook endpoints in the SQLite database.

    Args:
        database: the database (its owner connects, migrates and closes it).
    """

    __slots__ = ("_database",)

    def __init__(self, database: SqliteDatabase) -> None:
        """Use the endpoint table of ``database``."""
        self._database = database

    def __repr__(self) -> str:
        """Name the database."""
        return f"SqliteEndpointStore({self._database!r})"

    async def add(self, endpoint: EndpointRecord, *, room: Room | None = None) -> None:
        """Keep a new endpoint (if ``room`` lets it, in the same write)."""

        def write(connection: sqlite3.Connection) -> None:
            if room is not None:
                room(_all(connection))
            connection.execute(
                f"INSERT INTO webhook_endpoints ({_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                endpoint_values(endpoint),
            )

        await self._database.transaction(write)

    async def get(self, endpoint_id: str) -> EndpointRecord | None:
        """The endpoint ``endpoint_id``, or ``None``."""
        row = await self._database.fetchone(
            f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = ?", (endpoint_id,)
        )
        return None if row is None else endpoint_of(row)

    async def all(self) -> list[EndpointRecord]:
        """Every endpoint, oldest first."""
        rows = await self._database.fetchall(
            f"SELECT {_COLUMNS} FROM webhook_endpoints ORDER BY seq"
        )
        return [endpoint_of(row) for row in rows]

    async def update(
        self,
        endpoint_id: str,
        change: Callable[[EndpointRecord], EndpointRecord],
        *,
        room: Room | None = None,
    ) -> EndpointRecord | None:
        """Apply ``change`` in one write transaction; the result, or ``None``."""

        def write(connection: sqlite3.Connection) -> EndpointRecord | None:
            row = connection.execute(
                f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = ?",
                (endpoint_id,),
            ).fetchone()
            if row is None:
                return None
            if room is not None:
                room(_all(connection))
            changed = change(endpoint_of(row))
            values = endpoint_values(changed)
            connection.execute(
                "UPDATE webhook_endpoints SET url = ?, event_types = ?, "
                "jwt_header = ?, secrets = ?, created_us = ?, disabled_us = ?, "
                "disabled_reason = ? WHERE id = ?",
                (*values[1:], endpoint_id),
            )
            return changed

        return await self._database.transaction(write)


def _all(connection: sqlite3.Connection) -> list[EndpointRecord]:
    rows = connection.execute(
        f"SELECT {_COLUMNS} FROM webhook_endpoints ORDER BY seq"
    ).fetchall()
    return [endpoint_of(row) for row in rows]
