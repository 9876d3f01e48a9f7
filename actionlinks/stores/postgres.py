"""The scale-out store: everything in one PostgreSQL database.

Any number of service processes, on any number of hosts, share it: the ledger's
uses are single statements on a unique key, the outbox's claims skip rows that
others hold, and the schema is versioned and migrated when the service starts
(or by ``actionlinks migrate``) under an advisory lock, so processes starting
together take turns. Needs the ``postgres`` extra (asyncpg).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionlinks.stores import pg_endpoints, pg_ledger, pg_links, pg_outbox
from actionlinks.stores.pg_db import PgDatabase
from actionlinks.stores.pg_endpoints import PgEndpointStore
from actionlinks.stores.pg_ledger import PgLedger
from actionlinks.stores.pg_links import PgLinkStore
from actionlinks.stores.pg_outbox import PgOutbox

if TYPE_CHECKING:
    from actionlinks.clock import Clock

SCHEMA_STEPS = (
    pg_ledger.SCHEMA + pg_links.SCHEMA + pg_outbox.SCHEMA + pg_endpoints.SCHEMA,
)
"""``SCHEMA_STEPS[n]`` migrates version ``n`` to ``n + 1``."""


class PostgresStore:
    """Ledger, links, outbox and endpoints in one PostgreSQL database.

    Args:
        url: ``postgresql://user:password@host:port/database``.
        clock: stamps and expires entries.

    Raises:
        ConfigurationError: not such a URL, or the ``postgres`` extra is
            missing.
    """

    __slots__ = ("_database", "_endpoints", "_ledger", "_links", "_outbox")

    def __init__(self, url: str, *, clock: Clock) -> None:
        """Prepare the store; :meth:`connect` opens the pool."""
        self._database = PgDatabase(url)
        self._ledger = PgLedger(self._database, clock=clock)
        self._links = PgLinkStore(self._database, clock=clock)
        self._outbox = PgOutbox(self._database, clock=clock)
        self._endpoints = PgEndpointStore(self._database)

    def __repr__(self) -> str:
        """Name the server and database, never the password."""
        return f"PostgresStore({self._database!r})"

    @property
    def ledger(self) -> PgLedger:
        """The one-time-use ledger."""
        return self._ledger

    @property
    def links(self) -> PgLinkStore:
        """The link status store."""
        return self._links

    @property
    def outbox(self) -> PgOutbox:
        """The durable outbox."""
        return self._outbox

    @property
    def endpoints(self) -> PgEndpointStore:
        """The registered webhook endpoints."""
        return self._endpoints

    @property
    def database(self) -> PgDatabase:
        """The database (for tests and diagnostics)."""
        return self._database

    async def connect(self) -> None:
        """Open the pool (a no-op when open).

        Raises:
            LedgerUnavailableError: the server does not answer or refuses us.
        """
        await self._database.connect()

    async def schema_version(self) -> int:
        """The schema version the database has (0: none yet).

        Raises:
            LedgerUnavailableError: the database does not answer.
        """
        return await self._database.schema_version()

    async def migrate(self) -> int:
        """Bring the schema up to date; the schema version.

        Raises:
            LedgerUnavailableError: a migration failed.
        """
        return await self._database.migrate(SCHEMA_STEPS)

    async def check_health(self) -> None:
        """Return when the database answers.

        Raises:
            LedgerUnavailableError: it does not.
        """
        await self._database.fetchrow("SELECT 1")

    async def aclose(self) -> None:
        """Write what is pending (best effort) and close the pool."""
        try:
            if self._database.is_connected:
                await self._links.flush()
        finally:
            await self._database.aclose()
