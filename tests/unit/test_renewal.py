"""Renewing expired links (issue 6, item 2): only a link never used and never
revoked, at most once, ever; through the web app and the registry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.testclient import TestClient
from support import expired_of

from actionlinks.actions import Action
from actionlinks.errors import NotRenewableError, TokenExpiredError, TokenRevokedError
from actionlinks.home import initialize
from actionlinks.registry import RENEWAL_WINDOW, ExpiredLink
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.stores import MemoryStore
from actionlinks.web import create_app

BASE = "https://links.example.test"
JSON = {"Accept": "application/json"}


@pytest.fixture
def delivered():
    return []


@pytest.fixture
def service(tmp_path, clock, delivered):
    settings = Settings(home=tmp_path, base_url=BASE)
    initialize(settings, clock=clock)
    service = Service(settings, clock=clock, store=MemoryStore(clock=clock))

    async def renew(link):
        delivered.append(link)

    for name, ttl in (
        ("magic-signin", timedelta(minutes=15)),
        ("invite", timedelta(days=1)),
    ):
        service.registry.declare(Action(name=name, ttl=ttl, renew=renew))
    return service


@pytest.fixture
def client(service):
    with TestClient(create_app(service)) as client:
        yield client


def mint(client, service, action="magic-signin", sub="a@example.test"):
    return client.portal.call(lambda: service.registry.mint(action, subject=sub))


def path(link):
    return link.url.removeprefix(BASE)


def offer(client, link):
    """The renewal offer on the expired link's page, or None."""
    body = client.get(path(link), headers=JSON).json()
    assert body["error"] == "expired"
    return body.get("renewal")


def use(client, link):
    nonce = client.get(path(link), headers=JSON).json()["nonce"]
    assert client.post(path(link), data={"nonce": nonce}).status_code == 200


def test_an_unused_expired_link_is_renewed_once(client, service, clock, delivered):
    """The baseline: expired, never used → one new link, then no more offers."""
    link = mint(client, service)
    clock.advance(timedelta(minutes=20))
    renewal = offer(client, link)
    assert client.post("/renew", data={"renewal": renewal}).status_code == 200
    assert [d.claims.subject for d in delivered] == ["a@example.test"]
    assert offer(client, link) is None
    again = client.post("/renew", data={"renewal": renewal})  # the form re-sent
    assert again.status_code == 409
    assert "A new link was sent already" in again.text
    assert "open the link again" not in again.text  # it would offer nothing
    assert len(delivered) == 1


def test_a_used_link_is_never_renewed(client, service, clock, delivered):
    """Used, then expired: no offer, even long after the use left memory."""
    link = mint(client, service, "invite")
    use(client, link)
    clock.advance(timedelta(days=1, minutes=10))
    assert offer(client, link) is None
    assert delivered == []


def test_a_revoked_link_is_never_renewed(client, service, clock, delivered):
    """Revoked by id, then expired: no offer."""
    link = mint(client, service)
    client.portal.call(lambda: service.registry.revoke(link.claims.token_id))
    clock.advance(timedelta(minutes=20))
    assert offer(client, link) is None


def test_a_link_of_a_revoked_subject_is_never_renewed(client, service, clock):
    """The subject's links revoked (account closed), then expired: no offer."""
    link = mint(client, service)
    clock.advance(timedelta(seconds=1))
    client.portal.call(lambda: service.registry.revoke_subject("a@example.test"))
    clock.advance(timedelta(minutes=20))
    assert offer(client, link) is None


def test_an_offer_is_checked_again_when_posted(client, service, clock, delivered):
    """An offer taken before the subject was revoked no longer renews."""
    link = mint(client, service)
    clock.advance(timedelta(minutes=20))
    renewal = offer(client, link)
    client.portal.call(lambda: service.registry.revoke_subject("a@example.test"))
    response = client.post("/renew", data={"renewal": renewal}, headers=JSON)
    assert response.status_code == 409
    assert response.json() == {"status": "error", "error": "not_renewable"}
    assert delivered == []


def test_one_old_link_does_not_renew_again_the_next_day(
    client, service, clock, delivered
):
    """The renewal marker outlives the offer: days later, still no second link."""
    link = mint(client, service)
    clock.advance(timedelta(minutes=20))
    assert (
        client.post("/renew", data={"renewal": offer(client, link)}).status_code == 200
    )
    for _ in range(3):
        clock.advance(timedelta(days=2))
        assert offer(client, link) is None
    assert len(delivered) == 1


def test_renewal_ends_with_the_window(client, service, clock):
    """A link that expired longer ago than the renewal window is not renewed."""
    link = mint(client, service)
    clock.advance(RENEWAL_WINDOW + timedelta(minutes=20))
    assert offer(client, link) is None


@pytest.mark.parametrize("action", ["invite", "magic-signin"])
async def test_failed_delivery_gives_the_renewal_back(clock, issuer, ledger, action):
    """A failed delivery may be retried, also for actions that revoke earlier
    links; the undelivered link is left alone (a late answer may have sent it)."""
    from actionlinks.errors import HandlerError
    from actionlinks.registry import ActionRegistry

    attempts = []

    async def flaky(link):
        attempts.append(link)
        if len(attempts) == 1:
            raise RuntimeError("mail server down")

    registry = ActionRegistry(issuer, ledger=ledger, base_url=BASE, clock=clock)
    registry.declare(
        Action(
            name=action,
            ttl=timedelta(minutes=15),
            renew=flaky,
            revokes_previous=action == "magic-signin",
        )
    )
    link = await registry.mint(action, subject="u")
    clock.advance(timedelta(days=2))
    expired = expired_of(link)
    with pytest.raises(HandlerError):
        await registry.renew(expired)
    assert await registry.check(attempts[0].token)
    assert await registry.is_renewable(expired)
    clock.advance(timedelta(seconds=1))
    renewed = await registry.renew(expired)
    assert renewed.claims.subject == "u"
    with pytest.raises(NotRenewableError):
        await registry.renew(expired)
    if action == "magic-signin":  # only the delivered, newest link works
        with pytest.raises(TokenRevokedError):
            await registry.check(attempts[0].token)
    assert await registry.check(renewed.token)


async def test_a_renewed_link_keeps_the_data_and_names_what_it_replaces(
    clock, issuer, ledger
):
    """Audit: the new link carries the old one's data; link.replaces is its jti."""
    from actionlinks.registry import ActionRegistry

    delivered = []

    async def renew(link):
        delivered.append(link)

    registry = ActionRegistry(issuer, ledger=ledger, base_url=BASE, clock=clock)
    registry.declare(Action(name="invite", ttl=timedelta(days=1), renew=renew))
    link = await registry.mint("invite", subject="u", data={"team": 7})
    clock.advance(timedelta(days=2))
    with pytest.raises(TokenExpiredError) as caught:
        await registry.check(link.token)
    renewed = await registry.renew(ExpiredLink.from_error(caught.value))
    assert renewed.claims.data == {"team": 7}
    assert renewed.replaces == link.claims.token_id
    assert delivered == [renewed]


async def test_a_state_bound_link_is_renewed_with_the_current_state(
    clock, issuer, ledger
):
    """Audit: renewal of a state-bound action asks current_state."""
    from actionlinks.registry import ActionRegistry

    passwords = {"u": "hash-1"}

    async def current(subject):
        return passwords[subject]

    async def renew(link):
        pass

    registry = ActionRegistry(issuer, ledger=ledger, base_url=BASE, clock=clock)
    registry.declare(
        Action(
            name="password-reset",
            ttl=timedelta(minutes=30),
            binds_state=True,
            current_state=current,
            renew=renew,
        )
    )
    link = await registry.mint("password-reset", subject="u", state="hash-1")
    clock.advance(timedelta(hours=1))
    passwords["u"] = "hash-2"
    renewed = await registry.renew(expired_of(link))
    assert (await registry.redeem(renewed.token)).claims.is_state_bound


async def test_a_renewal_held_by_a_crashed_process_can_be_asked_again(
    clock, issuer, ledger
):
    """A renewal whose process died before delivering lapses after the hold."""
    from actionlinks.ledger import Hold
    from actionlinks.registry import HOLD_FOR, ActionRegistry

    async def renew(link):
        pass

    registry = ActionRegistry(issuer, ledger=ledger, base_url=BASE, clock=clock)
    registry.declare(Action(name="invite", ttl=timedelta(days=1), renew=renew))
    link = await registry.mint("invite", subject="u")
    clock.advance(timedelta(days=2))
    expired = expired_of(link)
    crashed = Hold(holder="dead-process", until=clock.now() + HOLD_FOR)
    await ledger.consume(
        f"renew:{link.claims.token_id}",
        expires_at=clock.now() + RENEWAL_WINDOW,
        hold=crashed,
    )
    with pytest.raises(NotRenewableError):
        await registry.renew(expired)
    clock.advance(HOLD_FOR)
    assert (await registry.renew(expired)).replaces == link.claims.token_id


def test_a_link_renewed_through_the_web_keeps_its_data(
    client, service, clock, delivered
):
    """Second audit: the signed renewal offer carries the data to the new link."""
    link = client.portal.call(
        lambda: service.registry.mint("invite", subject="u", data={"team": 7})
    )
    clock.advance(timedelta(days=2))
    assert (
        client.post("/renew", data={"renewal": offer(client, link)}).status_code == 200
    )
    (renewed,) = delivered
    assert renewed.claims.data == {"team": 7}
    assert renewed.replaces == link.claims.token_id
