"""Databases of their own on the PostgreSQL server at 127.0.0.1:5432.

Each test creates a database with a random name and drops it after, so tests
never see each other's rows. Without a server the tests fail and say how to
start one: they never skip.
"""

from __future__ import annotations

import asyncio
import secrets
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

import asyncpg
import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

SERVER = "postgresql://postgres@127.0.0.1:5432"
START = (
    "start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)


async def _admin() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(f"{SERVER}/postgres", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"no PostgreSQL at {SERVER} ({exc}); {START}")


async def _create() -> str:
    name = f"actionlinks_test_{secrets.token_hex(6)}"
    admin = await _admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def _drop(name: str) -> None:
    admin = await _admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """The URL of a new, empty database, dropped (connections and all) after."""
    name = await _create()
    try:
        yield f"{SERVER}/{name}"
    finally:
        await _drop(name)


@contextmanager
def database_for_processes() -> Iterator[str]:
    """:func:`fresh_database` for a synchronous test (service processes)."""
    name = asyncio.run(_create())
    try:
        yield f"{SERVER}/{name}"
    finally:
        asyncio.run(_drop(name))
