"""The service owns its lifecycle (issue 6, items 3, 4, 19): keys reload, reopening,
mounted apps, and what a closed service answers. In process, on a real SQLite
file and a real webhook receiver on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import re
import signal
from contextlib import asynccontextmanager
from datetime import timedelta

import anyio
import pytest
from servers import Receiver
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from actionlinks import service as service_module
from actionlinks.actions import Action
from actionlinks.clock import SystemClock
from actionlinks.errors import InvalidSignatureError, ServiceClosedError
from actionlinks.home import change_keys, initialize
from actionlinks.keyfile import load_keyring
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.web import create_app
from actionlinks.webhooks import generate_secret

pytestmark = pytest.mark.integration

BASE = "http://testserver"
NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@pytest.fixture
def settings(tmp_path):
    settings = Settings(home=tmp_path, base_url=BASE, webhook_allow_private=True)
    initialize(settings, clock=SystemClock())
    return settings


def rotate(settings):
    ring = load_keyring(settings.keys_path)
    rotated = change_keys(
        settings, lambda now: now.rotated("HS256", created_at=SystemClock().now())
    )
    return ring.signing_key("HS256").key_id, rotated.signing_key("HS256").key_id


async def wait_for(predicate, seconds=5.0):
    with anyio.fail_after(seconds):
        while not predicate():  # noqa: ASYNC110 - polls state another task changes
            await anyio.sleep(0.05)


async def test_a_rotated_keys_file_reaches_the_open_service_within_seconds(settings):
    """Item 3: rotate → new key signs and verifies; retire → old links die."""
    async with Service(settings) as service:
        old_link = await service.registry.mint("invite", subject="u")
        old_kid, new_kid = rotate(settings)
        await wait_for(lambda: service.keys.get(new_kid) is not None)
        fresh = await service.registry.mint("invite", subject="u")
        assert fresh.claims.key_id == new_kid
        assert service.registry.verify(old_link.token).key_id == old_kid
        change_keys(settings, lambda now: now.retired(old_kid))
        await wait_for(lambda: service.keys.get(old_kid) is None)
        with pytest.raises(InvalidSignatureError):
            service.registry.verify(old_link.token)


async def test_sighup_reloads_the_keys_at_once(settings, monkeypatch):
    """Item 3: SIGHUP reloads without waiting for the file watcher."""
    monkeypatch.setattr(service_module, "KEYS_CHECK_EVERY", timedelta(hours=1))
    async with Service(settings, reload_on_sighup=True) as service:
        await anyio.sleep(0.1)  # the signal receiver is installed
        _, new_kid = rotate(settings)
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: service.keys.get(new_kid) is not None, seconds=2)


async def test_a_broken_keys_file_keeps_the_keys_in_use(settings, caplog):
    """A keys file that does not load is logged; the service keeps signing."""
    async with Service(settings) as service:
        kid = service.keys.signing_key("HS256").key_id
        settings.keys_path.write_text("{not json")
        assert await service.reload_keys() is False
        assert (await service.registry.mint("invite", subject="u")).claims.key_id == kid
    assert "keys not reloaded" in caplog.text


def library_app(service):
    """The README's library mode: the app mounted, the outer lifespan opens it."""

    @asynccontextmanager
    async def lifespan(app):
        async with service:
            yield

    return Starlette(routes=[Mount("/links", create_app(service))], lifespan=lifespan)


def confirm(client, url):
    path = url.removeprefix(BASE)
    nonce = NONCE.search(client.get(path).text).group(1)
    return client.post(path, data={"nonce": nonce})


def declare_webhook(service, receiver):
    service.registry.declare(
        Action(
            name="invite",
            ttl=timedelta(days=1),
            handler_url=receiver.url,
            handler_secret=receiver.secret,
        )
    )


def test_mounted_app_sends_handler_webhooks(tmp_path):
    """Item 4: mounted under /links, a handler_url action's use reaches the app."""
    settings = Settings(
        home=tmp_path, base_url=f"{BASE}/links", webhook_allow_private=True
    )
    initialize(settings, clock=SystemClock())
    service = Service(settings)
    with Receiver(generate_secret()) as receiver:
        declare_webhook(service, receiver)
        with TestClient(library_app(service)) as client:
            link = client.portal.call(
                lambda: service.registry.mint("invite", subject="ada")
            )
            assert confirm(client, link.url).status_code == 200
    (event,) = receiver.events
    assert event["data"]["sub"] == "ada"


def test_a_second_app_on_the_same_service_sends_with_a_live_client(settings):
    """Item 4: after one app closed the service, another opens it afresh."""
    service = Service(settings)
    with Receiver(generate_secret()) as receiver:
        declare_webhook(service, receiver)
        for subject in ("first", "second"):
            with TestClient(create_app(service)) as client:
                link = client.portal.call(
                    lambda s=subject: service.registry.mint("invite", subject=s)
                )
                assert confirm(client, link.url).status_code == 200
            assert not service.is_open
    assert [e["data"]["sub"] for e in receiver.events] == ["first", "second"]


def test_mounted_app_without_the_lifespan_answers_503_and_says_why(settings, caplog):
    """Item 19: a service nobody opened is a clear 503, not a silent success."""
    service = Service(settings)
    outer = Starlette(routes=[Mount("/links", create_app(service))])
    with TestClient(outer) as client, caplog.at_level(logging.ERROR):
        assert client.get("/links/healthz").status_code == 503
        token = service.issuer.mint(
            service.registry.get("invite").purpose, subject="u"
        ).token
        response = client.get(f"/links/a/{token}")
        # A malformed link too, every time (the first one only, when its
        # rejection's write-behind came due, was 503; the next ones 400).
        garbage = [client.get("/links/a/xyz").status_code for _ in range(3)]
        posted = client.post("/links/a/xyz", data={"nonce": "n"}).status_code
    assert response.status_code == 503
    assert garbage == [503, 503, 503]
    assert posted == 503
    assert "async with service" in caplog.text


async def test_service_opened_twice_closes_once_and_reopens(settings):
    """Opening counts; the last close closes; a closed service opens again."""
    service = Service(settings)
    async with service, service:
        assert service.is_open
    assert not service.is_open
    with pytest.raises(ServiceClosedError):
        await service.registry.mint("invite", subject="u")
    async with service:
        assert await service.registry.mint("invite", subject="u")


async def test_the_last_of_two_tasks_closes_the_service(settings):
    """Audit: opened in one task, last closed in another: no cancel-scope error."""
    service = Service(settings)
    first_open, second_open, first_closed = anyio.Event(), anyio.Event(), anyio.Event()

    async def first():
        await service.open()
        first_open.set()
        await second_open.wait()
        await service.aclose()
        first_closed.set()

    async def second():
        await first_open.wait()
        await service.open()
        second_open.set()
        await first_closed.wait()
        assert service.is_open
        assert await service.registry.mint("invite", subject="u")
        await service.aclose()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(first)
        tasks.start_soon(second)
    assert not service.is_open


async def test_fixing_the_keys_files_mode_is_noticed(settings):
    """Second audit: after `chmod 600` (the log's advice) the keys load."""
    from actionlinks.keyfile import save_keyring

    async with Service(settings) as service:
        rotated = load_keyring(settings.keys_path).rotated(
            "HS256", created_at=SystemClock().now()
        )
        new_kid = rotated.signing_key("HS256").key_id
        readable = settings.keys_path.with_name("readable.json")
        save_keyring(rotated, readable)
        readable.chmod(0o644)
        readable.replace(settings.keys_path)  # in place, readable by others
        await anyio.sleep(1.5)
        assert service.keys.get(new_kid) is None
        settings.keys_path.chmod(0o600)
        await wait_for(lambda: service.keys.get(new_kid) is not None)


async def test_the_watcher_survives_a_keys_file_it_cannot_read(settings):
    """Second audit: a broken file is logged; a good one later is still loaded."""
    import json as json_module

    async with Service(settings) as service:
        document = json_module.loads(settings.keys_path.read_text())
        document["keys"][0]["created"] = "0001-01-01T00:00:00+01:00"
        broken = settings.keys_path.with_name("broken.json")
        broken.write_text(json_module.dumps(document))
        broken.chmod(0o600)
        broken.replace(settings.keys_path)
        await anyio.sleep(1.5)
        with pytest.raises(Exception):  # noqa: B017, PT011 - anything but a crash
            load_keyring(settings.keys_path)
        document["keys"][0]["created"] = "2026-01-01T00:00:00+00:00"
        settings.keys_path.write_text(json_module.dumps(document))
        _, new_kid = rotate(settings)
        await wait_for(lambda: service.keys.get(new_kid) is not None)


async def test_two_openers_at_once_start_one_background_task(settings):
    """Second audit: concurrent open() calls start the service once."""
    service = Service(settings)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(service.open)
        tasks.start_soon(service.open)
    stack = service._stack
    assert service.is_open
    await service.aclose()
    assert service._stack is stack
    await service.aclose()
    assert service._stack is None
    assert not service.is_open
