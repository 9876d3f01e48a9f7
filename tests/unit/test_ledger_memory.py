"""The in-memory ledger proves the ledger contract."""

from __future__ import annotations

import pytest
from contracts.ledger import LedgerContract

from actionlinks.ledger import MemoryLedger


class TestMemoryLedger(LedgerContract):
    @pytest.fixture
    def make_ledger(self):
        return lambda clock: MemoryLedger(clock=clock)
