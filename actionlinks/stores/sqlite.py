"""The embedded default store: everything in one SQLite file.

The schema is versioned (SQLite's ``user_version``) and migrated step by step
when the service starts or by ``actionlinks migrate``; step 1 is the schema of
actionlinks 0.1.0 development builds, so their files are carried forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from actionlinks.stores import sqlite_endpoints, sqlite_outbox
from actionlinks.stores.sqlite_db import SqliteDatabase
from actionlinks.stores.sqlite_endpoints import SqliteEndpointStore
from actionlinks.stores.sqlite_ledger import SqliteLedger
from actionlinks.stores.sqlite_links import SqliteLinkStore
from actionlinks.stores.sqlite_outbox import SqliteOutbox

if TYPE_CHECKING:
    from pathlib import Path

    from actionlinks.clock import Clock

_LEGACY = """
CREATE TABLE IF NOT EXISTS ledger_uses (
    token_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('used', 'revoked')),
    at REAL NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_revocations (
    subject TEXT NOT NULL,
    action TEXT NOT NULL,
    revoked_before REAL NOT NULL,
    until REAL NOT NULL,
    PRIMARY KEY (subject, action)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS links (
    token_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    viewed_at REAL,
    used_at REAL,
    revoked_at REAL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS link_attempts (
    id INTEGER PRIMARY KEY,
    token_id TEXT,
    action TEXT,
    at REAL NOT NULL,
    reason TEXT NOT NULL
);
"""

_MICROSECONDS = """
CREATE TABLE ledger_entries (
    token_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('used', 'revoked')),
    at_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    revoked_us INTEGER
) WITHOUT ROWID;
CREATE INDEX ledger_entries_expiry ON ledger_entries (expires_us);
CREATE TABLE subject_revocations (
    subject TEXT NOT NULL,
    action TEXT NOT NULL,
    before_us INTEGER NOT NULL,
    until_us INTEGER NOT NULL,
    PRIMARY KEY (subject, action)
) WITHOUT ROWID;
CREATE TABLE link_records (
    token_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    issued_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    viewed_us INTEGER,
    used_us INTEGER,
    revoked_us INTEGER
) WITHOUT ROWID;
CREATE INDEX link_records_subject ON link_records (subject, action);
CREATE INDEX link_records_expiry ON link_records (expires_us);
CREATE TABLE link_rejections (
    token_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    first_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL,
    PRIMARY KEY (token_id, reason)
) WITHOUT ROWID;
CREATE TABLE rejection_counts (
    hour_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (hour_us, reason)
) WITHOUT ROWID;
INSERT INTO ledger_entries (token_id, state, at_us, expires_us)
    SELECT token_id, state, CAST(round(at * 1e6) AS INTEGER),
           CAST(round(expires_at * 1e6) AS INTEGER)
    FROM ledger_uses;
-- Access tokens' revocations moved to their own keys ("access:<jti>"); the old
-- rows cannot tell links from access tokens, so every revocation is carried.
INSERT OR IGNORE INTO ledger_entries (token_id, state, at_us, expires_us)
    SELECT 'access:' || token_id, state, CAST(round(at * 1e6) AS INTEGER),
           CAST(round(expires_at * 1e6) AS INTEGER)
    FROM ledger_uses WHERE state = 'revoked' AND instr(token_id, ':') = 0;
INSERT INTO subject_revocations (subject, action, before_us, until_us)
    SELECT subject, action, CAST(round(revoked_before * 1e6) AS INTEGER),
           CAST(round(until * 1e6) AS INTEGER)
    FROM ledger_revocations;
INSERT INTO link_records
    SELECT token_id, action, subject, CAST(round(issued_at * 1e6) AS INTEGER),
           CAST(round(expires_at * 1e6) AS INTEGER),
           CAST(round(viewed_at * 1e6) AS INTEGER),
           CAST(round(used_at * 1e6) AS INTEGER),
           CAST(round(revoked_at * 1e6) AS INTEGER)
    FROM links;
INSERT INTO link_rejections
    SELECT token_id, reason, count(*), CAST(round(min(at) * 1e6) AS INTEGER),
           CAST(round(max(at) * 1e6) AS INTEGER)
    FROM link_attempts WHERE token_id IN (SELECT token_id FROM links)
    GROUP BY token_id, reason;
INSERT INTO rejection_counts
    SELECT CAST(at / 3600 AS INTEGER) * 3600000000, reason, count(*)
    FROM link_attempts GROUP BY 1, 2;
DROP TABLE ledger_uses;
DROP TABLE ledger_revocations;
DROP TABLE links;
DROP TABLE link_attempts;
"""

_HOLDS = """
ALTER TABLE ledger_entries ADD COLUMN holder TEXT;
ALTER TABLE ledger_entries ADD COLUMN held_until_us INTEGER;
"""

_OUTBOX = sqlite_outbox.SCHEMA + sqlite_endpoints.SCHEMA

SCHEMA_STEPS = (_LEGACY, _MICROSECONDS, _HOLDS, _OUTBOX)
"""``SCHEMA_STEPS[n]`` migrates version ``n`` to ``n + 1``."""


class SqliteStore:
    """Ledger, links, outbox and endpoints in one SQLite file (WAL), shared.

    Args:
        path: the database file; created with mode 0600 when absent.
        clock: stamps and expires entries.
    """

    __slots__ = ("_database", "_endpoints", "_ledger", "_links", "_outbox")

    def __init__(self, path: Path, *, clock: Clock) -> None:
        """Prepare the store; :meth:`connect` opens the file."""
        self._database = SqliteDatabase(path)
        self._ledger = SqliteLedger(self._database, clock=clock)
        self._links = SqliteLinkStore(self._database, clock=clock)
        self._outbox = SqliteOutbox(self._database, clock=clock)
        self._endpoints = SqliteEndpointStore(self._database)

    def __repr__(self) -> str:
        """Name the file."""
        return f"SqliteStore({self._database!r})"

    @property
    def ledger(self) -> SqliteLedger:
        """The one-time-use ledger."""
        return self._ledger

    @property
    def links(self) -> SqliteLinkStore:
        """The link status store."""
        return self._links

    @property
    def outbox(self) -> SqliteOutbox:
        """The durable outbox."""
        return self._outbox

    @property
    def endpoints(self) -> SqliteEndpointStore:
        """The registered webhook endpoints."""
        return self._endpoints

    @property
    def database(self) -> SqliteDatabase:
        """The database (for tests and diagnostics)."""
        return self._database

    async def connect(self) -> None:
        """Open the file (a no-op when open).

        Raises:
            LedgerUnavailableError: it cannot be opened.
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
        await self._database.fetchone("SELECT 1")

    async def aclose(self) -> None:
        """Write what is pending (best effort) and close the file."""
        try:
            if self._database.is_connected:
                await self._links.flush()
        finally:
            await self._database.aclose()
