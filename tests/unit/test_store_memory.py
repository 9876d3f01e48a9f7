"""The in-memory store proves the ledger and link store contracts."""

from __future__ import annotations

import pytest
from contracts.ledger import LedgerContract
from contracts.links import LinkStoreContract
from contracts.outbox import EndpointStoreContract, OutboxContract

from actionlinks.stores import MemoryStore, store_from_url


@pytest.fixture
async def store(clock):
    store = store_from_url("memory://", clock=clock)
    assert isinstance(store, MemoryStore)
    await store.connect()
    await store.migrate()
    yield store
    await store.aclose()


@pytest.fixture
def row_count(store):
    async def count():
        return store.links.row_count()

    return count


class TestMemoryLedger(LedgerContract):
    pass


class TestMemoryLinkStore(LinkStoreContract):
    pass


class TestMemoryOutbox(OutboxContract):
    pass


class TestMemoryEndpointStore(EndpointStoreContract):
    pass
