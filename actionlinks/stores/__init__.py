"""Storage backends, one seam: a :class:`Store` is chosen by its URL's scheme.

A store owns the one-time-use ledger (:class:`~actionlinks.ledger.Ledger`), the
link status store (:class:`~actionlinks.links.LinkStore`), the durable outbox
(:class:`~actionlinks.outbox.Outbox`), the webhook endpoints, its connections,
its schema and its health. ``sqlite:///path`` (the embedded default) and
``postgresql://…`` (scale-out: many processes on many hosts) and ``memory://``
(tests) are here, and any of them may keep its one-time ledger on Redis
(``ACTIONLINKS_LEDGER_URL``); all pass the same contract suites.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from actionlinks.errors import ConfigurationError
from actionlinks.stores.memory import MemoryStore
from actionlinks.stores.redis_store import RedisLedgerStore
from actionlinks.stores.sqlite import SqliteStore

if TYPE_CHECKING:
    from actionlinks.clock import Clock
    from actionlinks.ledger import Ledger
    from actionlinks.links import LinkStore
    from actionlinks.outbox import Outbox
    from actionlinks.webhooks.endpoints import EndpointStore

__all__ = ["MemoryStore", "SqliteStore", "Store", "store_from_url"]


class Store(Protocol):
    """Where a service keeps its state.

    Build one unconnected; :meth:`connect` and :meth:`migrate` when the service
    opens, :meth:`aclose` when it closes (after which it may connect again).
    """

    @property
    def ledger(self) -> Ledger:
        """The one-time-use ledger."""
        ...

    @property
    def links(self) -> LinkStore:
        """The link status store."""
        ...

    @property
    def outbox(self) -> Outbox:
        """The durable outbox (webhooks now, mail next)."""
        ...

    @property
    def endpoints(self) -> EndpointStore:
        """The registered webhook endpoints."""
        ...

    async def connect(self) -> None:
        """Open connections (a no-op when open)."""
        ...

    async def schema_version(self) -> int:
        """The schema version the database has (0: none yet)."""
        ...

    async def migrate(self) -> int:
        """Bring the schema up to date; the schema version."""
        ...

    async def check_health(self) -> None:
        """Return when the store answers; raise ``LedgerUnavailableError``."""
        ...

    async def aclose(self) -> None:
        """Write what is pending and close the connections."""
        ...


SCHEMES = ("sqlite:///", "postgresql://", "postgres://", "memory://")
"""The database URL schemes this version opens."""


def store_from_url(
    url: str, *, clock: Clock, ledger_url: str | None = None, namespace: str = ""
) -> Store:
    """The store named by ``url`` (``ACTIONLINKS_DATABASE_URL``), not connected.

    With ``ledger_url`` (``ACTIONLINKS_LEDGER_URL=redis://…``) its ledger
    lives on Redis, under keys of ``namespace`` (the issuer).

    Raises:
        ConfigurationError: a scheme this version does not support.
    """
    if ledger_url is not None:
        inner = store_from_url(url, clock=clock)
        return RedisLedgerStore(inner, ledger_url, clock=clock, namespace=namespace)
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not path:
            raise ConfigurationError("ACTIONLINKS_DATABASE_URL needs a file path")
        return SqliteStore(Path(path), clock=clock)
    if url == "memory://":
        return MemoryStore(clock=clock)
    if url.startswith(("postgresql://", "postgres://")):
        # Imported here: asyncpg is the postgres extra's.
        from actionlinks.stores.postgres import PostgresStore  # noqa: PLC0415

        return PostgresStore(url, clock=clock)
    raise ConfigurationError(
        "ACTIONLINKS_DATABASE_URL must be sqlite:///path, postgresql://… or memory://"
    )
