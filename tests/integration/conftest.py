"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from actionlinks.stores import SqliteStore, store_from_url


@pytest.fixture
async def sqlite_store(tmp_path, clock):
    """A migrated SQLite store in a file of its own, closed after the test."""
    store = store_from_url(f"sqlite:///{tmp_path / 'store.db'}", clock=clock)
    assert isinstance(store, SqliteStore)
    await store.connect()
    await store.migrate()
    yield store
    await store.aclose()
