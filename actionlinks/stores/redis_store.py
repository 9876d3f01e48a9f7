"""A store whose one-time ledger lives on Redis (``ACTIONLINKS_LEDGER_URL``).

Everything else (link status, outbox, endpoints) stays in the database store
it wraps. The Redis client is made here, unconnected; its connections open in
the event loop on first use and close with the store. Needs the ``redis``
extra.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from actionlinks.errors import ConfigurationError, LedgerUnavailableError

if TYPE_CHECKING:
    from actionlinks.clock import Clock
    from actionlinks.ledger import Ledger
    from actionlinks.links import LinkStore
    from actionlinks.outbox import Outbox
    from actionlinks.stores import Store
    from actionlinks.webhooks.endpoints import EndpointStore

TIMEOUT = 5.0
"""Seconds allowed for connecting to Redis, for each command, and for a free
connection of the pool (callers wait for one rather than fail)."""
CONNECTIONS = 64
"""The most Redis connections one process opens."""
CHECK_IDLE = 2
"""A pooled connection idle this many seconds is checked (PING) before use, so a
restarted Redis or its idle timeout does not fail a request."""
SCHEMES = ("redis://", "rediss://")
_log = logging.getLogger("actionlinks")


class RedisLedgerStore:
    """``inner`` with its ledger on the Redis server at ``url``.

    Raises:
        ConfigurationError: not a redis:// or rediss:// URL, or the ``redis``
            extra is not installed.
    """

    __slots__ = ("_client", "_errors", "_inner", "_ledger", "_shown")

    def __init__(
        self, inner: Store, url: str, *, clock: Clock, namespace: str = ""
    ) -> None:
        """Make the client and the ledger; connect nothing.

        ``namespace`` (the issuer) keeps deployments sharing one Redis apart.
        """
        if not url.startswith(SCHEMES):
            raise ConfigurationError(
                "ACTIONLINKS_LEDGER_URL must be redis://host:port/db (or rediss://)"
            )
        try:
            client_module: Any = importlib.import_module("redis.asyncio")
            exceptions: Any = importlib.import_module("redis.exceptions")
            ledger_module: Any = importlib.import_module(
                "actionlinks.stores.redis_ledger"
            )
        except ImportError as exc:
            raise ConfigurationError(
                "a Redis ledger needs the redis extra: pip install 'actionlinks[redis]'"
            ) from exc
        try:
            pool = client_module.BlockingConnectionPool.from_url(
                url,
                max_connections=CONNECTIONS,
                timeout=TIMEOUT,
                socket_connect_timeout=TIMEOUT,
                socket_timeout=TIMEOUT,
                health_check_interval=CHECK_IDLE,
            )
            parts = urlsplit(url)
            self._shown = f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}"
        except ValueError as exc:  # its text may quote the password
            raise ConfigurationError(
                "ACTIONLINKS_LEDGER_URL is not a Redis URL (redis://[user:"
                "password@]host:port/db; quote / # ? in a password as %2F %23 %3F)"
            ) from exc
        self._client = client_module.Redis.from_pool(pool)  # closes it too
        self._errors: type[Exception] = exceptions.RedisError
        self._inner = inner
        digest = hashlib.sha256(namespace.encode()).hexdigest()[:12]
        self._ledger: Ledger = ledger_module.RedisLedger(
            self._client, clock=clock, prefix=f"al:{digest}:"
        )

    def __repr__(self) -> str:
        """Name both, never the Redis password."""
        return f"{self._inner!r} with the ledger on {self._shown}"

    @property
    def ledger(self) -> Ledger:
        """The one-time-use ledger, on Redis."""
        return self._ledger

    @property
    def links(self) -> LinkStore:
        """The link status store (the database's)."""
        return self._inner.links

    @property
    def outbox(self) -> Outbox:
        """The durable outbox (the database's)."""
        return self._inner.outbox

    @property
    def endpoints(self) -> EndpointStore:
        """The webhook endpoints (the database's)."""
        return self._inner.endpoints

    async def connect(self) -> None:
        """Open the database, then check that Redis answers and keeps keys.

        Raises:
            LedgerUnavailableError: either does not answer, or Redis may evict
                the ledger's keys.
        """
        await self._inner.connect()
        await self._ping()
        try:
            persistence = await self._client.info("persistence")
        except self._errors:
            return
        if not int(persistence.get("aof_enabled", 0)):
            _log.warning(
                "the Redis at %s keeps no append-only file: if it crashes it "
                "forgets recent uses and revocations (appendonly yes, "
                "appendfsync always)",
                self._shown,
            )

    async def schema_version(self) -> int:
        """The database's schema version (Redis has none)."""
        return await self._inner.schema_version()

    async def migrate(self) -> int:
        """Bring the database's schema up to date (Redis has none)."""
        return await self._inner.migrate()

    async def check_health(self) -> None:
        """Return when the database and Redis answer."""
        await self._inner.check_health()
        await self._ping()

    async def aclose(self) -> None:
        """Close the database and the Redis connections."""
        try:
            await self._inner.aclose()
        finally:
            await self._client.aclose()

    async def _ping(self) -> None:
        try:
            await self._client.ping()
            memory = await self._client.info("memory")
        except self._errors as exc:
            raise LedgerUnavailableError(
                f"the Redis ledger at {self._shown} does not answer: {exc}"
            ) from exc
        policy = memory.get("maxmemory_policy", "noeviction")
        if policy != "noeviction":
            # Evicted, a use or a revocation would be forgotten: links used twice.
            raise LedgerUnavailableError(
                f"the Redis at {self._shown} evicts keys (maxmemory-policy "
                f"{policy}); the ledger needs maxmemory-policy noeviction"
            )
