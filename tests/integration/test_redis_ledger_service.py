"""Service processes sharing a one-time ledger on a real Redis server.

Each test starts a redis-server of its own on a free port (so it can stop it)
and `actionlinks serve` processes with their own homes holding copies of the
same keys: only Redis is shared.
"""

from __future__ import annotations

import asyncio
import re
import shutil

import httpx
import pytest
from servers import RedisServer, ServeProcess, free_port
from support import shows_a_token

from actionlinks.clock import SystemClock

pytestmark = pytest.mark.integration

NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def two_hosts(tmp_path, redis_server):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    servers = [ServeProcess(first, env={"ACTIONLINKS_LEDGER_URL": redis_server.url})]
    second.mkdir()
    for name in ("keys.json", "actionlinks.toml"):
        shutil.copy2(first / name, second / name)
    servers.append(
        ServeProcess(
            second,
            env={"ACTIONLINKS_LEDGER_URL": redis_server.url},
            base_url=False,
        )
    )
    yield servers
    for server in servers:
        server.stop()


def test_one_link_posted_100_times_over_two_processes_succeeds_once(
    two_hosts, redis_server
):
    """Two processes with their own databases, one Redis ledger: of 100
    concurrent confirmations spread over both, exactly one wins."""
    first, second = two_hosts
    url = first.mint("email-confirm", "ada@example.org")
    path = url.split(str(first.port), 1)[1]
    nonce = NONCE.search(httpx.get(url).text).group(1)

    async def hammer():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{(first, second)[n % 2].base_url}{path}",
                        data={"nonce": nonce},
                    )
                    for n in range(100)
                )
            )

    answers = asyncio.run(hammer())
    codes = [a.status_code for a in answers]
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 409}
    assert any(":t:" in key for key in redis_server.ledger_keys())
    # The use is seen on the other host, whose own database never heard of it.
    assert httpx.get(f"{second.base_url}{path}").status_code == 409


def test_redis_down_is_503_and_nothing_is_consumed(tmp_path, redis_server):
    """With the ledger's Redis stopped a confirmation is 503 and the link is not
    spent; once Redis is back it works, once."""
    server = ServeProcess(tmp_path, env={"ACTIONLINKS_LEDGER_URL": redis_server.url})
    try:
        url = server.mint("email-confirm", "ada@example.org")
        nonce = NONCE.search(httpx.get(url).text).group(1)
        redis_server.stop()
        down = httpx.post(url, data={"nonce": nonce}, timeout=30)
        assert down.status_code == 503
        assert httpx.get(f"{server.base_url}/healthz").status_code == 503
        redis_server.start()
        assert httpx.post(url, data={"nonce": nonce}).status_code == 200
        assert httpx.post(url, data={"nonce": nonce}).status_code == 409
    finally:
        log = server.stop()
    assert not shows_a_token(log)


def test_the_ledger_url_is_checked_and_its_password_never_shown(tmp_path):
    """Only redis:// and rediss:// are taken; the store's repr hides the
    password; without Redis answering, opening the service says so."""
    from actionlinks.errors import ConfigurationError
    from actionlinks.settings import Settings
    from actionlinks.stores import store_from_url

    with pytest.raises(ConfigurationError, match="redis://"):
        Settings.from_env({"ACTIONLINKS_LEDGER_URL": "memcached://x"}, cwd=tmp_path)
    store = store_from_url(
        "memory://", clock=SystemClock(), ledger_url="redis://:s3cret-pw@127.0.0.1:1/2"
    )
    assert "s3cret-pw" not in repr(store)
    assert "127.0.0.1:1" in repr(store)
    with pytest.raises(ConfigurationError, match="not a Redis URL") as raised:
        store_from_url(
            "memory://",
            clock=SystemClock(),
            ledger_url="redis://user:abc?SECRET2@127.0.0.1:6379/0",
        )
    assert "SECRET2" not in str(raised.value)
    assert "abc" not in str(raised.value)
    settings = Settings.from_env(
        {"ACTIONLINKS_LEDGER_URL": "redis://:s3cret-pw@127.0.0.1:6379/0"},
        cwd=tmp_path,
    )
    assert "s3cret-pw" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:6379/0", "redis://"),
        ("redis://h:notaport/0", "not a Redis URL"),
    ],
)
def test_a_ledger_url_that_is_not_redis_is_refused(url, said):
    """Only redis:// and rediss:// URLs that parse make a Redis ledger."""
    from actionlinks.errors import ConfigurationError
    from actionlinks.stores import store_from_url

    with pytest.raises(ConfigurationError, match=said):
        store_from_url("memory://", clock=SystemClock(), ledger_url=url)


async def test_a_store_whose_redis_is_down_does_not_open(tmp_path):
    """connect() and check_health() say the Redis ledger does not answer."""
    from actionlinks.errors import LedgerUnavailableError
    from actionlinks.stores import store_from_url

    store = store_from_url(
        "memory://",
        clock=SystemClock(),
        ledger_url=f"redis://127.0.0.1:{free_port()}/0",
    )
    with pytest.raises(LedgerUnavailableError, match="does not answer"):
        await store.connect()
    with pytest.raises(LedgerUnavailableError):
        await store.check_health()
    await store.aclose()


async def test_a_redis_that_may_evict_keys_is_refused(redis_server):
    """Evicted, a use or a revocation would be forgotten: a Redis whose
    maxmemory-policy is not noeviction does not open as the ledger."""
    from actionlinks.errors import LedgerUnavailableError
    from actionlinks.stores import store_from_url

    redis_server.stop()
    redis_server.start("--maxmemory", "64mb", "--maxmemory-policy", "volatile-lru")
    store = store_from_url(
        "memory://", clock=SystemClock(), ledger_url=redis_server.url
    )
    with pytest.raises(LedgerUnavailableError, match="noeviction"):
        await store.connect()
    await store.aclose()


async def test_deployments_sharing_a_redis_keep_their_revocations_apart(redis_server):
    """Two issuers on one Redis database: a subject revoked by one is not
    revoked for the other."""
    from datetime import timedelta

    from actionlinks.stores import store_from_url

    clock = SystemClock()
    stores = [
        store_from_url(
            "memory://", clock=clock, ledger_url=redis_server.url, namespace=issuer
        )
        for issuer in ("https://a.example", "https://c.example")
    ]
    for store in stores:
        await store.connect()
    now = clock.now()
    await stores[1].ledger.revoke_subject(
        "user:42", action="", before=now, until=now + timedelta(hours=1)
    )
    earlier = now - timedelta(seconds=1)
    assert await stores[1].ledger.is_subject_revoked(
        "user:42", action="invite", issued_at=earlier
    )
    assert not await stores[0].ledger.is_subject_revoked(
        "user:42", action="invite", issued_at=earlier
    )
    for store in stores:
        await store.aclose()


async def test_more_concurrent_calls_than_connections_wait_instead_of_failing(
    redis_server,
):
    """Four times the pool's connections at once: every call answers."""
    from datetime import timedelta

    from actionlinks.stores import store_from_url
    from actionlinks.stores.redis_store import CONNECTIONS

    clock = SystemClock()
    store = store_from_url("memory://", clock=clock, ledger_url=redis_server.url)
    await store.connect()
    expires = clock.now() + timedelta(minutes=5)
    results = await asyncio.gather(
        *(
            store.ledger.consume(f"t{n}", expires_at=expires)
            for n in range(4 * CONNECTIONS)
        )
    )
    await store.aclose()
    assert results == [True] * (4 * CONNECTIONS)
