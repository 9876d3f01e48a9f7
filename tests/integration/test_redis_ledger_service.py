"""Service processes sharing a one-time ledger on a real Redis server.

Each test starts a redis-server of its own on a free port (so it can stop it)
and `actionlinks serve` processes with their own homes holding copies of the
same keys: only Redis is shared.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time

import httpx
import pytest
import redis
from servers import ServeProcess, free_port

from actionlinks.clock import SystemClock

pytestmark = pytest.mark.integration

NONCE = re.compile(r'name="nonce" value="([^"]+)"')


class RedisServer:
    """redis-server on 127.0.0.1, in memory, stopped and started at will."""

    def __init__(self):
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not installed (Debian package redis-server)")
        self.executable = executable
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [
                self.executable,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()
        return self

    def stop(self):
        if self.process is not None:
            self.process.terminate()
            self.process.wait()
            self.process = None

    def ledger_keys(self):
        client = redis.Redis.from_url(self.url)
        try:
            return [k.decode() for k in client.scan_iter(match="al:*")]
        finally:
            client.close()


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
    assert any(key.startswith("al:t:") for key in redis_server.ledger_keys())
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
    assert "eyJ" not in log


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
    assert "127.0.0.1:1/2" in repr(store)


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
