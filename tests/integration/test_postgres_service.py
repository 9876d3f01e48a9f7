"""Several `actionlinks serve` processes on one PostgreSQL database behave as one.

Each process has its own home holding a copy of the same keys and config (as
hosts behind a load balancer would), so nothing is shared through the local
disk: only the database (and, where named, a Redis ledger). Links carry the
public base URL; each test sends their paths to the processes directly. Each
test has a database of its own on 127.0.0.1:5432, dropped after; without a
server the tests fail and say how to start one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time

import asyncpg
import httpx
import pytest
from apis import Api, MailApi
from mailsink import MailSink
from pgserver import database_for_processes
from servers import SCRIPT, Receiver, RedisServer, ServeProcess, clean_env
from support import shows_a_token

pytestmark = pytest.mark.integration

PUBLIC = "https://links.example.test"
NONCE = re.compile(r'name="nonce" value="([^"]+)"')
FAST = {
    "ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1",
    "ACTIONLINKS_WEBHOOK_RETRY_SCHEDULE": "0,1,1,1,1",
    "ACTIONLINKS_MAIL_RETRY_SCHEDULE": "0,1,1,1,1",
}


class Fleet:
    """Service processes with homes of their own: copies of one home's keys
    and config, made with ``actionlinks init`` for the public base URL."""

    def __init__(self, root, database_url, **env):
        self.root = root
        self.env = {"ACTIONLINKS_DATABASE_URL": database_url, **FAST, **env}
        first = root / "host0"
        first.mkdir()
        subprocess.run(
            [str(SCRIPT), "init"],
            env=clean_env(ACTIONLINKS_HOME=str(first), ACTIONLINKS_BASE_URL=PUBLIC),
            check=True,
            capture_output=True,
        )
        self.template = first
        self.hosts: list[ServeProcess] = []

    def home(self, number):
        home = self.root / f"host{number}"
        if not home.exists():
            home.mkdir()
            for name in ("keys.json", "actionlinks.toml"):
                shutil.copy2(self.template / name, home / name)
        return home

    def start(self, count, **env):
        """Start ``count`` processes at once, then wait until each answers."""
        started = [
            ServeProcess(
                self.home(len(self.hosts) + n),
                env={**self.env, **env},
                base_url=False,
                wait=False,
            )
            for n in range(count)
        ]
        self.hosts.extend(started)
        for host in started:
            host.clients = []
            host.wait_ready()
        return started

    def stop(self):
        logs = []
        for host in self.hosts:
            for client in getattr(host, "clients", []):
                client.close()
            logs.append(host.stop())
        return logs


@pytest.fixture
def database_url():
    with database_for_processes() as url:
        yield url


@pytest.fixture
def fleet(tmp_path, database_url):
    fleet = Fleet(tmp_path, database_url)
    yield fleet
    for log in fleet.stop():
        assert "Traceback" not in log, log
        assert not shows_a_token(log)


def path_of(url):
    assert url.startswith(PUBLIC)
    return url.removeprefix(PUBLIC)


def post_everywhere(hosts, path, nonce, times=100):
    async def hammer():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        f"{hosts[n % len(hosts)].base_url}{path}", data={"nonce": nonce}
                    )
                    for n in range(times)
                )
            )

    return [answer.status_code for answer in asyncio.run(hammer())]


def query(database_url, sql, *arguments):
    async def run():
        connection = await asyncpg.connect(database_url)
        try:
            return await connection.fetch(sql, *arguments)
        finally:
            await connection.close()

    return asyncio.run(run())


def test_one_link_posted_100_times_over_two_hosts_succeeds_once(fleet, database_url):
    """100 concurrent confirmations spread over two processes: exactly one is
    200, the rest 409; the other host then sees the use too."""
    first, second = fleet.start(2)
    path = path_of(first.mint("email-confirm", "ada@example.org"))
    nonce = NONCE.search(httpx.get(f"{first.base_url}{path}").text).group(1)
    codes = post_everywhere([first, second], path, nonce)
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 409}
    assert httpx.get(f"{second.base_url}{path}").status_code == 409
    [(state,)] = query(database_url, "SELECT state FROM ledger_entries")
    assert state == "used"


def test_a_view_and_a_revocation_on_one_host_are_seen_on_the_other(fleet):
    """A link viewed on host A shows as viewed in host B's status API; a
    link revoked through A's API is dead on B."""
    first, second = fleet.start(2)
    token = first.cli(
        "tokens", "issue", "--scope", "links:read", "--scope", "links:write"
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    viewed = json.loads(first.cli("mint", "invite", "--sub", "u:1", "--json").stdout)
    viewed_jti = viewed["jti"]
    path = path_of(viewed["url"])
    assert httpx.get(f"{first.base_url}{path}").status_code == 200
    deadline = time.monotonic() + 10
    while True:
        status = httpx.get(
            f"{second.base_url}/v1/links/{viewed_jti}", headers=headers
        ).json()
        if status["state"] == "viewed":
            break
        assert time.monotonic() < deadline, status
        time.sleep(0.1)
    minted = json.loads(first.cli("mint", "invite", "--sub", "u:2", "--json").stdout)
    revoked = path_of(minted["url"])
    assert httpx.get(f"{second.base_url}{revoked}").status_code == 200
    answer = httpx.post(
        f"{first.base_url}/v1/links/revoke",
        json={"jti": minted["jti"]},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    assert httpx.get(f"{second.base_url}{revoked}").status_code == 400
    status = httpx.get(
        f"{second.base_url}/v1/links/{minted['jti']}", headers=headers
    ).json()
    assert status["state"] == "revoked"
    assert [a["reason"] for a in status["rejected_attempts"]] == ["revoked"]
    # A jti PostgreSQL cannot hold is unknown, not an outage (found by an audit).
    for jti in ("a%00b", "x" * 300):
        unknown = httpx.get(f"{second.base_url}/v1/links/{jti}", headers=headers)
        assert unknown.status_code == 404, unknown.text


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


def test_over_a_redis_ledger_a_link_is_used_once_and_redis_holds_the_use(
    fleet, database_url, redis_server
):
    """PostgreSQL for the state, Redis for the ledger: of 100 confirmations
    over two hosts one wins, the use lives in Redis (not in ledger_entries)."""
    first, second = fleet.start(2, ACTIONLINKS_LEDGER_URL=redis_server.url)
    path = path_of(first.mint("email-confirm", "ada@example.org"))
    nonce = NONCE.search(httpx.get(f"{second.base_url}{path}").text).group(1)
    codes = post_everywhere([first, second], path, nonce)
    assert codes.count(200) == 1, codes
    assert set(codes) <= {200, 409}
    assert any(":t:" in key for key in redis_server.ledger_keys())
    assert query(database_url, "SELECT * FROM ledger_entries") == []
    assert httpx.get(f"{first.base_url}{path}").status_code == 409


def test_with_the_redis_ledger_down_a_use_is_503_and_waits_for_it(fleet, redis_server):
    """Redis stopped: a confirmation on either host is 503 and spends
    nothing; once Redis is back the link redeems, once."""
    first, second = fleet.start(2, ACTIONLINKS_LEDGER_URL=redis_server.url)
    path = path_of(first.mint("email-confirm", "ada@example.org"))
    nonce = NONCE.search(httpx.get(f"{first.base_url}{path}").text).group(1)
    redis_server.stop()
    for host in (first, second):
        answer = httpx.post(f"{host.base_url}{path}", data={"nonce": nonce}, timeout=30)
        assert answer.status_code == 503
    redis_server.start()
    codes = post_everywhere([first, second], path, nonce, times=10)
    assert codes.count(200) == 1, codes


def test_three_processes_starting_at_once_on_an_empty_database_all_come_up(
    fleet, database_url
):
    """Three hosts started together on an empty database: the schema is
    made once, every host answers, and a link minted on one works on another."""
    hosts = fleet.start(3)
    [(version,)] = query(database_url, "SELECT version FROM actionlinks_schema")
    assert version >= 1
    path = path_of(hosts[0].mint("email-confirm", "ada@example.org"))
    nonce = NONCE.search(httpx.get(f"{hosts[1].base_url}{path}").text).group(1)
    answer = httpx.post(f"{hosts[2].base_url}{path}", data={"nonce": nonce})
    assert answer.status_code == 200


def test_300_webhooks_through_two_hosts_one_killed_midway_are_all_delivered(fleet):
    """300 messages accepted by two hosts; one is SIGKILLed with deliveries in
    flight; the other takes its claims over when their leases lapse and
    every message is delivered."""
    first, second = fleet.start(2)
    with Receiver(hold=0.2) as receiver:
        endpoint = Api(first).add(receiver.url)
        receiver.secret = endpoint["secret"]
        apis = [Api(first), Api(second)]
        ids = [apis[n % 2].send("order.paid", {"n": n})["id"] for n in range(150)]
        assert receiver.requests, "no delivery was in flight"
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        ids += [apis[1].send("order.paid", {"n": n})["id"] for n in range(150, 300)]
        for message_id in ids:
            apis[1].wait_for(message_id, "delivered", seconds=90)
    assert len(set(ids)) == 300
    assert set(ids) <= receiver.ids()


def test_100_mails_through_two_hosts_one_killed_midway_are_all_delivered(fleet):
    """100 mails accepted by two hosts while the SMTP server is down; one host
    is SIGKILLed with its mails still waiting; the server comes up and every
    mail arrives, the killed host's sent by the other."""
    sink = MailSink()
    first, second = fleet.start(
        2,
        ACTIONLINKS_SMTP_HOST="127.0.0.1",
        ACTIONLINKS_SMTP_PORT=str(sink.port),
        ACTIONLINKS_SMTP_FROM="Acme <links@acme.test>",
        ACTIONLINKS_MAIL_RETRY_SCHEDULE=",".join(["0"] + ["1"] * 30),
    )
    apis = [MailApi(first), MailApi(second)]

    def send(n, api):
        return api.send("email-confirm", f"u{n}@example.org", sub=f"user:{n}")["id"]

    ids = [send(n, apis[n % 2]) for n in range(50)]
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    ids += [send(n, apis[1]) for n in range(50, 100)]
    with sink:
        for mail_id in ids:
            apis[1].wait_for(mail_id, "delivered", seconds=90)
        received = list(sink.received)
    assert {r.recipients[0] for r in received} == {
        f"u{n}@example.org" for n in range(100)
    }
