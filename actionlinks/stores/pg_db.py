"""A PostgreSQL database used from async code: an asyncpg pool per process.

The pool is made by :meth:`PgDatabase.connect`, inside the event loop that
uses it, and closed by :meth:`PgDatabase.aclose`. Every query waits at most
:data:`TIMEOUT` seconds for a connection and for its answer. Failures become
:class:`~actionlinks.errors.LedgerUnavailableError` (the service answers 503);
use before :meth:`~PgDatabase.connect` or after :meth:`~PgDatabase.aclose` is a
:class:`~actionlinks.errors.ServiceClosedError`. The password never appears in
a repr or an error. Needs the ``postgres`` extra (asyncpg).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel

from actionlinks.errors import (
    ConfigurationError,
    LedgerUnavailableError,
    ServiceClosedError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

T = TypeVar("T")
Connection = Any
"""An asyncpg connection (asyncpg ships no type information)."""

TIMEOUT = 5.0
"""Seconds allowed for a connection of the pool, for connecting, and per query."""
MIGRATE_TIMEOUT = 120.0
"""Seconds a migration may take, waiting for another process's included."""
CONNECTIONS = 10
"""The most connections one process opens (each worker process has its own)."""
_LOCK_CLASS = 0x616C  # "al": the advisory-lock class of actionlinks
_MIGRATION_LOCK = 1
SCHEMES = ("postgresql://", "postgres://")


def _asyncpg() -> Any:  # noqa: ANN401 - asyncpg ships no type information
    try:
        return importlib.import_module("asyncpg")
    except ImportError as exc:
        raise ConfigurationError(
            "a PostgreSQL database needs the postgres extra: "
            "pip install 'actionlinks[postgres]'"
        ) from exc


def _shown(url: str) -> str:
    """``url`` without its password (or anything else after the host)."""
    if not url.startswith(SCHEMES):
        raise ConfigurationError(
            "ACTIONLINKS_DATABASE_URL must be postgresql://user@host:port/database"
        )
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
        host = parts.hostname or "localhost"
        if "@" in parts.path + parts.query + parts.fragment:
            # An unquoted / in the password: what looks like the path holds it.
            raise ValueError  # noqa: TRY301 - one message for every bad URL
    except ValueError as exc:  # its text may quote the password
        raise ConfigurationError(
            "ACTIONLINKS_DATABASE_URL is not a PostgreSQL URL (postgresql://user:"
            "password@host:port/database; quote / # ? @ in a password as %2F %23 "
            "%3F %40)"
        ) from exc
    database = parts.path.lstrip("/")
    if not database:
        raise ConfigurationError(
            "ACTIONLINKS_DATABASE_URL must name the database: "
            "postgresql://user@host:port/database"
        )
    return f"postgresql://{host}:{port}/{database}"


def rowcount(status: str) -> int:
    """The rows a command changed, from its status (``"UPDATE 3"``)."""
    return int(status.rsplit(" ", 1)[-1])


class PgDatabase:
    """A PostgreSQL database, opened by :meth:`connect`.

    Args:
        url: ``postgresql://user:password@host:port/database[?sslmode=…]``.

    Raises:
        ConfigurationError: not such a URL, or the ``postgres`` extra is
            missing.
    """

    __slots__ = ("_driver", "_errors", "_opening", "_pool", "_shown", "_url")

    def __init__(self, url: str) -> None:
        """Check the URL and load the driver; nothing is opened yet."""
        self._shown = _shown(url)
        self._driver = _asyncpg()
        self._errors: tuple[type[BaseException], ...] = (
            self._driver.PostgresError,
            self._driver.InterfaceError,
            # A pooled connection whose server process was killed, reused.
            self._driver.InternalClientError,
            OSError,
            TimeoutError,
        )
        self._opening = (ValueError, *self._errors)
        self._url = url
        self._pool: Any = None

    def __repr__(self) -> str:
        """Name the server and database, never the password."""
        return f"PgDatabase({self._shown!r})"

    @property
    def is_connected(self) -> bool:
        """Whether :meth:`connect` opened the pool and it is not closed."""
        return self._pool is not None

    async def connect(self) -> None:
        """Open the pool (one connection now, more on demand); a no-op when open.

        Raises:
            LedgerUnavailableError: the server does not answer or refuses us.
        """
        if self._pool is not None:
            return
        try:
            self._pool = await self._driver.create_pool(
                self._url,
                min_size=1,
                max_size=CONNECTIONS,
                timeout=TIMEOUT,
                command_timeout=TIMEOUT,
                max_inactive_connection_lifetime=60.0,
            )
        except self._opening as exc:  # a bad option, or no answer
            raise self._failed("cannot open", exc) from exc

    async def aclose(self) -> None:
        """Close the pool (waiting for queries under way); a no-op when closed."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except self._errors:
                pool.terminate()

    def _failed(self, what: str, exc: BaseException) -> LedgerUnavailableError:
        if isinstance(exc, ValueError):  # a bad option: its text may quote the URL
            return LedgerUnavailableError(
                f"{what} the database {self._shown}: the URL's options are not valid"
            )
        reason = str(exc) or type(exc).__name__
        return LedgerUnavailableError(f"{what} the database {self._shown}: {reason}")

    async def run(
        self, work: Callable[[Connection], Awaitable[T]], *, atomic: bool = False
    ) -> T:
        """Run ``work`` on a connection of the pool, in a transaction if ``atomic``.

        Nothing of an atomic ``work`` is kept when it raises.

        A cancellation waits for the work to finish (every query is bounded
        by :data:`TIMEOUT`): a statement is never cut off halfway, which
        would leave its connection in an unknown state.

        Raises:
            LedgerUnavailableError: PostgreSQL failed.
            ServiceClosedError: the database is not open.
        """
        pool = self._pool
        if pool is None:
            raise ServiceClosedError(
                f"the database {self._shown} is not open: open the service first "
                "(async with service, e.g. in your app's lifespan)"
            )
        await anyio.lowlevel.checkpoint_if_cancelled()  # shielded below
        with anyio.CancelScope(shield=True):
            try:
                async with pool.acquire(timeout=TIMEOUT) as connection:
                    if not atomic:
                        result = await work(connection)
                    else:
                        async with connection.transaction():
                            result = await work(connection)
            except self._errors as exc:
                raise self._failed("failed on", exc) from exc
        return result

    async def transaction(self, work: Callable[[Connection], Awaitable[T]]) -> T:
        """Run ``work`` in one transaction; nothing of it is kept when it raises.

        Raises:
            LedgerUnavailableError: PostgreSQL failed.
            ServiceClosedError: the database is not open.
        """
        return await self.run(work, atomic=True)

    async def execute(self, sql: str, *arguments: object) -> int:
        """Run one statement; the number of rows it changed."""
        return rowcount(await self.run(lambda c: c.execute(sql, *arguments)))

    async def fetchrow(self, sql: str, *arguments: object) -> tuple[Any, ...] | None:
        """The first row of a query, or ``None``."""
        row = await self.run(lambda c: c.fetchrow(sql, *arguments))
        return None if row is None else tuple(row)

    async def fetch(self, sql: str, *arguments: object) -> list[tuple[Any, ...]]:
        """All rows of a query."""
        rows = await self.run(lambda c: c.fetch(sql, *arguments))
        return [tuple(row) for row in rows]

    async def schema_version(self) -> int:
        """The schema version the database has (0: none yet).

        Raises:
            LedgerUnavailableError: the server does not answer.
        """
        return await self.run(_schema_version)

    async def migrate(self, steps: Sequence[str]) -> int:
        """Apply the schema steps the database lacks, in one transaction.

        ``steps[n]`` brings the schema from version ``n`` to ``n + 1``. An
        advisory lock makes processes that start together take turns: the
        later ones find nothing to do.

        Returns:
            The schema version now.

        Raises:
            LedgerUnavailableError: a step failed (nothing of it is kept), or
                the database comes from a newer actionlinks.
        """
        version = _schema_version

        async def migrate(connection: Connection) -> None:
            # A current schema needs no lock and no DDL: a service whose role
            # may only read and write starts on a database migrated before.
            if await version(connection) == len(steps):
                return
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1, $2)",
                _LOCK_CLASS,
                _MIGRATION_LOCK,
                timeout=MIGRATE_TIMEOUT,
            )
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS actionlinks_schema "
                "(version integer NOT NULL)"
            )
            current = await version(connection)
            if current > len(steps):
                raise LedgerUnavailableError(
                    f"the database has schema version {current}, newer than this "
                    f"actionlinks knows ({len(steps)}); upgrade actionlinks"
                )
            for step in steps[current:]:
                await connection.execute(step, timeout=MIGRATE_TIMEOUT)
            await connection.execute("DELETE FROM actionlinks_schema")
            await connection.execute(
                "INSERT INTO actionlinks_schema (version) VALUES ($1)", len(steps)
            )

        await self.run(migrate, atomic=True)
        return len(steps)


async def _schema_version(connection: Connection) -> int:
    if await connection.fetchval("SELECT to_regclass('actionlinks_schema')"):
        found = await connection.fetchval("SELECT max(version) FROM actionlinks_schema")
        return 0 if found is None else int(found)
    return 0
