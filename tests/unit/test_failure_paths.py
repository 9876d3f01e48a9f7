"""Failure paths of the storage-facing parts: a ledger that fails at each step,
a form reader at each refusal, and a service whose store will not open."""

from __future__ import annotations

import logging
from datetime import timedelta

import anyio
import pytest

from actionlinks import registry as registry_module
from actionlinks.actions import Action
from actionlinks.errors import HandlerError, LedgerUnavailableError, RequestError
from actionlinks.home import initialize
from actionlinks.ledger import MemoryLedger
from actionlinks.registry import ActionRegistry
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.stores import MemoryStore
from actionlinks.web.forms import _multipart

BASE = "https://links.example.test"


class FlakyLedger(MemoryLedger):
    """A memory ledger whose chosen operations fail or lose their hold."""

    fail: frozenset[str] = frozenset()
    lose_hold = False
    confirm_failures = 0

    async def confirm(self, token_id, *, holder):
        if "confirm" in self.fail:
            raise LedgerUnavailableError("disk full")
        if self.confirm_failures:
            self.confirm_failures -= 1
            raise LedgerUnavailableError("a blip")
        await super().confirm(token_id, holder=holder)

    async def extend(self, token_id, *, hold):
        if "extend" in self.fail:
            raise LedgerUnavailableError("disk full")
        if self.lose_hold:
            return False
        return await super().extend(token_id, hold=hold)

    async def release(self, token_id, *, holder=None):
        if "release" in self.fail:
            raise LedgerUnavailableError("disk full")
        await super().release(token_id, holder=holder)


@pytest.fixture
def flaky(clock):
    return FlakyLedger(clock=clock)


async def _done(claims, form):
    return "done"


@pytest.fixture
def flaky_registry(issuer, flaky, clock):
    registry = ActionRegistry(issuer, ledger=flaky, base_url=BASE, clock=clock)
    # A use that reaches a handler is held while it runs, and confirmed after.
    registry.declare(Action(name="invite", ttl=timedelta(days=1), handler=_done))
    return registry


async def test_a_use_whose_confirmation_fails_is_logged_and_succeeds(
    flaky_registry, flaky, caplog, monkeypatch
):
    """The store never answers until the hold nears its end: the handler ran,
    so the person is told so; the log says the hold will lapse."""
    monkeypatch.setattr(registry_module, "HOLD_FOR", timedelta(seconds=0.4))
    flaky.fail = frozenset({"confirm"})
    link = await flaky_registry.mint("invite", subject="u")
    assert await flaky_registry.redeem(link.token)
    assert "could not be recorded" in caplog.text


async def test_a_blip_at_confirmation_is_ridden_out_and_the_use_stays(
    flaky_registry, flaky, clock, caplog
):
    """The store fails twice when the use is confirmed, then answers: the use
    is recorded, so the link does not work again when the hold would lapse."""
    flaky.confirm_failures = 2
    link = await flaky_registry.mint("invite", subject="u")
    assert await flaky_registry.redeem(link.token)
    assert "could not be recorded" not in caplog.text
    clock.advance(registry_module.HOLD_FOR + timedelta(minutes=1))
    assert (await flaky.lookup(link.claims.token_id)).state == "used"


async def test_a_store_stalled_for_seconds_at_confirmation_still_records_the_use(
    flaky_registry, flaky, clock, caplog
):
    """Seven failures in a row (about three seconds of a stalled database) are
    ridden out: the use is recorded and the link never works again (found by
    an audit: four tries, then the hold lapsed and the link worked twice)."""
    flaky.confirm_failures = 7
    link = await flaky_registry.mint("invite", subject="u")
    assert await flaky_registry.redeem(link.token)
    assert "could not be recorded" not in caplog.text
    clock.advance(registry_module.HOLD_FOR + timedelta(minutes=1))
    assert (await flaky.lookup(link.claims.token_id)).state == "used"
    again = await flaky_registry.mint("invite", subject="v")
    assert await flaky_registry.redeem(again.token)


@pytest.mark.parametrize(("fail", "lose"), [({"extend"}, False), (set(), True)])
async def test_a_hold_that_cannot_be_extended_is_logged(
    flaky_registry, flaky, monkeypatch, caplog, fail, lose
):
    """A heartbeat that fails, or finds the hold gone, says so in the log."""
    monkeypatch.setattr(registry_module, "HOLD_FOR", timedelta(seconds=0.06))
    flaky.fail, flaky.lose_hold = frozenset(fail), lose

    async def slow(claims, form):
        await anyio.sleep(0.1)

    flaky_registry.declare(Action(name="invite", ttl=timedelta(days=1), handler=slow))
    link = await flaky_registry.mint("invite", subject="u")
    caplog.set_level(logging.WARNING)
    assert await flaky_registry.redeem(link.token)
    assert "its hold" in caplog.text


async def test_a_failed_renewal_that_cannot_be_undone_is_logged(
    flaky_registry, flaky, clock, caplog
):
    """Delivery failed and releasing the marker failed too: logged, not hidden."""

    async def down(link):
        raise RuntimeError("mail server down")

    flaky_registry.declare(Action(name="invite", ttl=timedelta(days=1), renew=down))
    link = await flaky_registry.mint("invite", subject="u")
    clock.advance(timedelta(days=2))
    flaky.fail = frozenset({"release"})
    expired = registry_module.ExpiredLink(
        action="invite",
        subject="u",
        token_id=link.claims.token_id,
        issued_at=link.claims.issued_at,
        expired_at=link.claims.expires_at,
    )
    with pytest.raises(HandlerError):
        await flaky_registry.renew(expired)
    assert "could not undo a failed renewal" in caplog.text


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"--b\r\n"),  # no boundary
        ("multipart/form-data; boundary=b", b"x--b\r\n"),  # no opening delimiter
        ("multipart/form-data; boundary=b", b"--b\r\n\r\n--b--"),  # headless part
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1--b--',
        ),
        ("multipart/form-data; boundary=b", b"--b\r\nno colon\r\n\r\nv\r\n--b--"),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: attachment\r\n\r\nv\r\n--b--",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--",
        ),
        (
            "multipart/form-data; boundary=b",
            b"--b\r\n" + b"X: y\r\n" * 300 + b"\r\nv\r\n--b--",
        ),
    ],
)
def test_malformed_multipart_bodies_are_refused(content_type, body):
    """Every way a body leaves the strict shape is a 400 malformed_form."""
    with pytest.raises(RequestError) as caught:
        _multipart(content_type, body)
    assert (caught.value.status, caught.value.code) == (400, "malformed_form")


async def test_a_service_whose_store_will_not_open_stays_closed(tmp_path, clock):
    """An unopenable store raises from open(); nothing is left running."""
    settings = Settings(
        home=tmp_path, database_url=f"sqlite:///{tmp_path}/missing/dir/x.db"
    )
    initialize(settings, clock=clock)
    service = Service(settings, clock=clock)
    with pytest.raises(LedgerUnavailableError):
        await service.open()
    assert not service.is_open
    assert "closed" in repr(service)
    assert service.describe("no-such-action") is None
    await service.aclose()  # closing a closed service is a no-op


async def test_an_open_service_says_so_and_what_actions_do(tmp_path, clock):
    """The repr names the store and the state; describe() tells the dispatch."""
    settings = Settings(home=tmp_path)
    initialize(settings, clock=clock)
    async with Service(settings, clock=clock, store=MemoryStore(clock=clock)) as svc:
        assert "open" in repr(svc)
        assert svc.describe("invite") is None


async def test_background_work_that_dies_fails_health_and_says_why(
    tmp_path, clock, caplog, monkeypatch
):
    """A worker ended by an error nobody expected (an audit found one from the
    PostgreSQL driver) is logged at once, and /healthz's check fails, so the
    balancer stops sending and the process gets restarted."""
    settings = Settings(home=tmp_path)
    initialize(settings, clock=clock)
    service = Service(settings, clock=clock, store=MemoryStore(clock=clock))

    async def broken():
        raise RuntimeError("driver in a state it cannot leave")

    monkeypatch.setattr(service, "_flush_forever", broken)
    await service.open()
    try:
        await anyio.sleep(0.05)
        with pytest.raises(LedgerUnavailableError, match="restart the process"):
            await service.check_health()
        assert "driver in a state it cannot leave" in caplog.text
    finally:
        with pytest.raises(BaseExceptionGroup):
            await service.aclose()
