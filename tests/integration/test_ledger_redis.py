"""The Redis ledger proves the ledger contract against a real Redis on 127.0.0.1.

Each test works in a namespace of its own and removes it after. Without a
Redis server the tests fail and say so: they never skip.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
import redis.asyncio
from contracts.ledger import LedgerContract
from redis.exceptions import RedisError

from actionlinks.errors import LedgerUnavailableError
from actionlinks.stores.memory import MemoryLinkStore
from actionlinks.stores.redis_ledger import RedisLedger

pytestmark = pytest.mark.integration

REDIS_URL = "redis://127.0.0.1:6379/0"


class RedisBacked:
    """The Redis ledger beside an in-memory link journal (what the contract uses)."""

    def __init__(self, ledger, links):
        self.ledger = ledger
        self.links = links


@pytest.fixture
async def client():
    client = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except RedisError as exc:
        await client.aclose()
        pytest.fail(
            f"no Redis at {REDIS_URL} ({exc}); start it: redis-server --daemonize yes "
            "--bind 127.0.0.1 --port 6379 --save ''"
        )
    yield client
    await client.aclose()


@pytest.fixture
async def store(client, clock):
    prefix = f"test:{secrets.token_hex(6)}:"
    yield RedisBacked(
        RedisLedger(client, clock=clock, prefix=prefix), MemoryLinkStore(clock=clock)
    )
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)


class TestRedisLedger(LedgerContract):
    async def test_redis_really_holds_the_uses_with_their_lifetime(
        self, backend, client, clock
    ):
        """The use is a key on the server that expires on its own."""
        await backend.consume("held-t", expires_at=clock.now() + timedelta(minutes=5))
        [key] = [k async for k in client.scan_iter(match="test:*t:held-t")]
        assert await client.hget(key, "state") == b"used"
        assert 0 < await client.pttl(key) <= (5 * 60 + 60) * 1000

    async def test_a_subject_cannot_forge_another_subjects_revocation(
        self, backend, clock
    ):
        """Keys carry the subject's length: 'a:b' + 'c' is not 'a' + 'b:c'."""
        now = clock.now()
        await backend.revoke_subject(
            "a:b", action="c", before=now, until=now + timedelta(days=1)
        )
        assert not await backend.is_subject_revoked(
            "a", action="b:c", issued_at=now - timedelta(seconds=1)
        )


async def test_an_unreachable_redis_is_unavailable_never_unused(clock):
    """A store failure raises LedgerUnavailableError; nothing reads as unused."""
    client = redis.asyncio.Redis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=1
    )
    ledger = RedisLedger(client, clock=clock)
    try:
        with pytest.raises(LedgerUnavailableError, match="Redis"):
            await ledger.consume("t", expires_at=clock.now() + timedelta(minutes=1))
        with pytest.raises(LedgerUnavailableError):
            await ledger.lookup("t")
    finally:
        await client.aclose()
    assert "127.0.0.1:1" not in repr(ledger)
