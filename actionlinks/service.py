"""The composition root: a home directory's settings, keys, ledger and actions.

The CLI and the web app build one :class:`Service` from :class:`Settings` and
pass its parts down; nothing below this module reads files or settings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Self

from actionlinks.access import AccessTokens
from actionlinks.actions import ActionRegistry
from actionlinks.database import SqliteDatabase
from actionlinks.errors import ConfigurationError, KeyFileError, LedgerUnavailableError
from actionlinks.keys import KeyRing, load_keyring, save_keyring
from actionlinks.ledgers.sqlite import SqliteLedger
from actionlinks.settings import default_config
from actionlinks.store import SqliteLinkStore
from actionlinks.tokens import TokenIssuer

_log = logging.getLogger("actionlinks")

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import TracebackType

    from actionlinks.clock import Clock
    from actionlinks.ledger import Ledger
    from actionlinks.settings import Settings
    from actionlinks.store import LinkStore


def initialize(settings: Settings, *, clock: Clock) -> list[Path]:
    """Create the config and keys files in the home directory, never overwriting.

    Returns:
        The files created; empty when everything was already there.

    Raises:
        ConfigurationError: the home directory cannot be created or written.
    """
    created: list[Path] = []
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create {settings.home}: {exc}") from exc
    config = settings.config_path
    try:
        with config.open("x", encoding="utf-8") as handle:
            handle.write(default_config(settings.base_url))
        created.append(config)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigurationError(f"cannot write {config}: {exc}") from exc
    if not settings.keys_path.exists():
        ring = KeyRing.generate(created_at=clock.now())
        try:
            save_keyring(ring, settings.keys_path)
            created.append(settings.keys_path)
        except KeyFileError:
            if not settings.keys_path.exists():  # pragma: no cover - disk errors
                raise
    return created


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    """Everything a running actionlinks needs, built from settings."""

    settings: Settings
    clock: Clock
    keys: KeyRing
    issuer: TokenIssuer
    database: SqliteDatabase
    ledger: Ledger
    store: LinkStore
    registry: ActionRegistry
    access: AccessTokens
    closer: Callable[[], None] = field(repr=False, compare=False)

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock) -> Self:
        """Load the keys and open the database of ``settings``.

        Raises:
            KeyFileError: the keys file is missing or unsafe.
            ConfigurationError: an unsupported database or ledger URL.
            LedgerUnavailableError: the database cannot be opened.
        """
        if settings.ledger_url is not None:
            raise ConfigurationError(
                "ACTIONLINKS_LEDGER_URL is not supported by this version; "
                "the ledger lives in the database"
            )
        keys = load_keyring(settings.keys_path)
        issuer = TokenIssuer(
            keys, issuer=settings.issuer, clock=clock, leeway=settings.leeway
        )
        database = SqliteDatabase(settings.sqlite_path)
        try:
            ledger = SqliteLedger(database, clock=clock)
            store = SqliteLinkStore(database, clock=clock)
        except BaseException:
            database.close()
            raise
        registry = ActionRegistry(
            issuer,
            ledger=ledger,
            base_url=settings.base_url,
            clock=clock,
            actions=settings.actions,
            journal=store,
        )
        return cls(
            settings=settings,
            clock=clock,
            keys=keys,
            issuer=issuer,
            database=database,
            ledger=ledger,
            store=store,
            registry=registry,
            access=AccessTokens(issuer, ledger=ledger, clock=clock),
            closer=lambda: _close_sqlite(store, database),
        )

    async def check_health(self) -> None:
        """Return when the database answers.

        Raises:
            LedgerUnavailableError: it does not.
        """
        await self.database.fetchone("SELECT 1")

    def close(self) -> None:
        """Write what is pending (best effort) and close the database."""
        self.closer()

    async def __aenter__(self) -> Self:
        """Use the service as an async context manager that closes it."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close the database."""
        self.close()


def _close_sqlite(store: SqliteLinkStore, database: SqliteDatabase) -> None:
    try:
        store.flush_now()
    except LedgerUnavailableError as exc:
        _log.warning("pending link views were not recorded: %s", exc)
    finally:
        database.close()


def replace_keys(settings: Settings, ring: KeyRing) -> None:
    """Write a rotated or retired ring over the keys file (mode 0600).

    Raises:
        KeyFileError: the file cannot be written.
    """
    save_keyring(ring, settings.keys_path, replace=True)
