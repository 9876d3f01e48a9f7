"""Shared fixtures: a frozen clock, a key ring, an issuer, ledgers and a registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from actionlinks.keys import KeyRing
from actionlinks.ledger import MemoryLedger
from actionlinks.registry import ActionRegistry
from actionlinks.testing import FrozenClock
from actionlinks.tokens import TokenIssuer

ISSUER = "https://links.example.test"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture(scope="session")
def ring() -> KeyRing:
    return KeyRing.generate(created_at=START)


@pytest.fixture
def issuer(ring: KeyRing, clock: FrozenClock) -> TokenIssuer:
    return TokenIssuer(ring, issuer=ISSUER, clock=clock, leeway=timedelta(seconds=30))


@pytest.fixture
def ledger(clock: FrozenClock) -> MemoryLedger:
    return MemoryLedger(clock=clock)


@pytest.fixture
def registry(
    issuer: TokenIssuer, ledger: MemoryLedger, clock: FrozenClock
) -> ActionRegistry:
    return ActionRegistry(issuer, ledger=ledger, base_url=ISSUER, clock=clock)
