"""Declaring actions, minting links and redeeming them (actionlinks.actions)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from support import b64

from actionlinks.actions import DEFAULT_ACTIONS, Action, token_from
from actionlinks.errors import (
    ConfigurationError,
    HandlerError,
    InvalidSignatureError,
    MalformedTokenError,
    StateChangedError,
    TokenAlreadyUsedError,
    TokenError,
    TokenExpiredError,
    TokenRevokedError,
    WrongPurposeError,
)
from actionlinks.registry import ActionRegistry


def test_default_actions_have_the_documented_lifetimes_and_use():
    """Built-ins: reset 30 min, confirm 24 h, sign-in 15 min, invite 7 d, unsub 90 d."""
    table = {a.name: (a.ttl, a.one_time) for a in DEFAULT_ACTIONS}
    assert table == {
        "password-reset": (timedelta(minutes=30), True),
        "email-confirm": (timedelta(hours=24), True),
        "magic-signin": (timedelta(minutes=15), True),
        "invite": (timedelta(days=7), True),
        "unsubscribe": (timedelta(days=90), False),
    }


async def test_minted_link_is_built_from_the_base_url(registry):
    """The URL is base URL + /a/ + token, and nothing else."""
    link = await registry.mint("email-confirm", subject="a@example.test")
    assert link.url == f"https://links.example.test/a/{link.token}"
    assert link.token not in repr(link)


async def test_redeem_runs_the_handler_once_with_claims_and_form(registry):
    """The handler receives the verified claims and the posted fields."""
    calls = []

    async def handler(claims, form):
        calls.append((claims.subject, dict(form)))
        return "done"

    registry.declare(
        Action(name="email-confirm", ttl=timedelta(hours=1), handler=handler)
    )
    link = await registry.mint("email-confirm", subject="a@example.test")
    redemption = await registry.redeem(link.token, form={"x": "1"})
    assert redemption.result == "done"
    assert calls == [("a@example.test", {"x": "1"})]
    with pytest.raises(TokenAlreadyUsedError) as caught:
        await registry.redeem(link.token)
    assert caught.value.used_at is not None
    assert caught.value.token_id == link.claims.token_id
    assert len(calls) == 1


async def test_concurrent_redeems_in_one_process_succeed_exactly_once(registry):
    """Of 50 concurrent redemptions of one link, exactly one wins."""
    link = await registry.mint("invite", subject="u")
    results = await asyncio.gather(
        *(registry.redeem(link.token) for _ in range(50)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(
        isinstance(r, TokenAlreadyUsedError)
        for r in results
        if isinstance(r, BaseException)
    )


async def test_failing_handler_releases_the_use(registry):
    """A handler that raises leaves the link usable; the cause is kept."""
    attempts = []

    async def flaky(claims, form):
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("database down")
        return "ok"

    registry.declare(Action(name="invite", ttl=timedelta(days=1), handler=flaky))
    link = await registry.mint("invite", subject="u")
    with pytest.raises(HandlerError) as caught:
        await registry.redeem(link.token)
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert (await registry.redeem(link.token)).result == "ok"


async def test_cancelled_handler_releases_the_use(registry):
    """Cancellation during the handler releases the use and propagates."""
    started = asyncio.Event()

    async def slow(claims, form):
        started.set()
        await asyncio.sleep(3600)

    registry.declare(Action(name="invite", ttl=timedelta(days=1), handler=slow))
    link = await registry.mint("invite", subject="u")
    task = asyncio.ensure_future(registry.redeem(link.token))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    registry.declare(Action(name="invite", ttl=timedelta(days=1)))
    assert (await registry.redeem(link.token)).claims.subject == "u"


async def test_multi_use_action_redeems_repeatedly(registry, ledger):
    """Unsubscribe links are idempotent: every redemption succeeds, none consumes."""
    link = await registry.mint(
        "unsubscribe", subject="a@example.test", data={"list": "news"}
    )
    for _ in range(3):
        redemption = await registry.redeem(link.token)
        assert redemption.claims.data == {"list": "news"}
    assert await ledger.lookup(link.claims.token_id) is None


async def test_check_does_not_consume(registry):
    """check() verifies and reports use without consuming."""
    link = await registry.mint("invite", subject="u")
    for _ in range(3):
        assert (await registry.check(link.token)).subject == "u"
    await registry.redeem(link.token)
    with pytest.raises(TokenAlreadyUsedError):
        await registry.check(link.token)


async def test_redeem_for_another_action_is_rejected(registry, ledger):
    """A link minted for one action is refused when another is expected."""
    link = await registry.mint("password-reset", subject="u")
    with pytest.raises(WrongPurposeError):
        await registry.redeem(link.token, action="email-confirm")
    assert await ledger.lookup(link.claims.token_id) is None


async def test_state_bound_link_dies_when_the_state_changes(registry):
    """A password-reset link bound to the password hash fails once it changes."""
    passwords = {"user:42": "hash-1"}

    async def current(subject):
        return passwords[subject]

    registry.declare(
        Action(
            name="password-reset",
            ttl=timedelta(minutes=30),
            binds_state=True,
            current_state=current,
        )
    )
    first = await registry.mint("password-reset", subject="user:42", state="hash-1")
    passwords["user:42"] = "hash-2"
    with pytest.raises(StateChangedError):
        await registry.redeem(first.token)
    second = await registry.mint("password-reset", subject="user:42", state="hash-2")
    assert (await registry.redeem(second.token)).claims.is_state_bound


async def test_revoked_link_is_rejected(registry):
    """A link revoked by token id can no longer be redeemed."""
    link = await registry.mint("invite", subject="u")
    await registry.revoke(link.claims.token_id)
    with pytest.raises(TokenRevokedError):
        await registry.redeem(link.token)
    with pytest.raises(TokenRevokedError):
        await registry.check(link.token)


async def test_revoked_multi_use_link_is_rejected(registry):
    """Revocation applies to multi-use links too."""
    link = await registry.mint("unsubscribe", subject="u")
    await registry.revoke(link.claims.token_id)
    with pytest.raises(TokenRevokedError):
        await registry.redeem(link.token)


async def test_revoking_a_subject_kills_links_issued_before_now(registry, clock):
    """All of a subject's links (optionally of one action) issued earlier die."""
    invite = await registry.mint("invite", subject="u")
    confirm = await registry.mint("email-confirm", subject="u")
    other = await registry.mint("invite", subject="someone-else")
    clock.advance(timedelta(seconds=1))
    await registry.revoke_subject("u", action="invite")
    with pytest.raises(TokenRevokedError):
        await registry.redeem(invite.token)
    assert await registry.redeem(confirm.token)
    assert await registry.redeem(other.token)
    clock.advance(timedelta(seconds=1))
    fresh = await registry.mint("invite", subject="u")
    assert await registry.redeem(fresh.token)
    late = await registry.mint("email-confirm", subject="u")
    clock.advance(timedelta(seconds=1))
    await registry.revoke_subject("u")
    with pytest.raises(TokenRevokedError):
        await registry.redeem(late.token)


async def test_new_sign_in_link_revokes_the_previous_one(registry, clock):
    """magic-signin revokes the subject's earlier links; the new one works."""
    first = await registry.mint("magic-signin", subject="u")
    clock.advance(timedelta(seconds=5))
    second = await registry.mint("magic-signin", subject="u")
    with pytest.raises(TokenRevokedError):
        await registry.redeem(first.token)
    assert await registry.redeem(second.token)


async def test_expired_link_is_rejected_and_not_consumed(registry, clock, ledger):
    """An expired link raises TokenExpiredError and leaves no ledger entry."""
    link = await registry.mint("magic-signin", subject="u")
    clock.advance(timedelta(minutes=16))
    with pytest.raises(TokenExpiredError):
        await registry.redeem(link.token)
    assert await ledger.lookup(link.claims.token_id) is None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),
        lambda t: t + "=",
        lambda t: t.replace("-", "+").replace("_", "/") + "+/",
        lambda t: "x" * (10 * 1024 * 1024),
        lambda t: b64(b'{"alg":"none","kid":"x"}') + "." + t.split(".")[1] + ".",
        lambda t: t.split(".", 1)[1],
    ],
)
async def test_rejected_tokens_consume_nothing(registry, ledger, mutate):
    """Every rejection leaves the ledger untouched and the real link usable."""
    link = await registry.mint("invite", subject="u")
    with pytest.raises((InvalidSignatureError, MalformedTokenError)):
        await registry.redeem(mutate(link.token))
    assert ledger._entries == {}
    assert await registry.redeem(link.token)


async def test_unknown_action_is_a_configuration_error(registry):
    """Minting for an undeclared action says which actions exist."""
    with pytest.raises(ConfigurationError, match="password-reset"):
        await registry.mint("launch-rockets", subject="u")


@pytest.mark.parametrize(
    "url", ["ftp://x.test", "x.test", "https://x.test/?a=1", "https://"]
)
def test_base_url_must_be_an_http_origin(issuer, ledger, clock, url):
    """Links are only ever built from a valid http(s) base URL."""
    with pytest.raises(ConfigurationError):
        ActionRegistry(issuer, ledger=ledger, base_url=url, clock=clock)


def test_token_is_found_in_a_link_url():
    """verify accepts a URL: the token is the path segment after /a/."""
    assert token_from("https://x.test/a/abc.def.ghi?utm_source=mail#x") == "abc.def.ghi"
    assert token_from("https://x.test/prefix/a/abc.def.ghi") == "abc.def.ghi"
    assert token_from("  abc.def.ghi\n") == "abc.def.ghi"


async def test_any_text_redeems_only_with_token_errors(registry):
    """Garbage given to redeem raises only TokenErrors and consumes nothing."""
    for text in ["", "a.b.c", "\x00", "é.é.é", "....", "eyJ9.eyJ9.eyJ9"]:
        with pytest.raises(TokenError):
            await registry.redeem(text)


def test_state_binding_needs_a_way_to_read_the_state():
    """Issue 6 item 12: binds_state without current_state is refused when declared."""
    with pytest.raises(ConfigurationError, match="current_state"):
        Action(name="password-reset", ttl=timedelta(minutes=30), binds_state=True)


async def test_state_for_an_action_without_current_state_is_refused(registry):
    """Issue 6 item 12: such a link could never be confirmed through the service."""
    from actionlinks.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError) as caught:
        await registry.mint("password-reset", subject="u", state="hash")
    assert caught.value.field == "state"


@pytest.mark.parametrize(
    "url", ["http://[", "https://host:99999/", "https://u:p@x.test"]
)
def test_base_urls_that_are_not_origins_are_configuration_errors(
    issuer, ledger, clock, url
):
    """Issue 6 item 8: a broken base URL is a ConfigurationError, not a ValueError."""
    with pytest.raises(ConfigurationError):
        ActionRegistry(issuer, ledger=ledger, base_url=url, clock=clock)


def test_handler_dispatcher_describes_what_a_use_does():
    """Library mode: a Python handler, a redirect only, or nothing at all."""
    from actionlinks.actions import HandlerDispatcher

    async def handler(claims, form):
        return None

    dispatcher = HandlerDispatcher()
    week = timedelta(days=7)
    assert dispatcher.describe(Action(name="a", ttl=week, handler=handler))
    redirect = Action(name="a", ttl=week, redirect="https://x.test/ok")
    assert dispatcher.describe(redirect) == "a redirect only"
    assert dispatcher.describe(Action(name="a", ttl=week)) is None
    assert repr(dispatcher) == "HandlerDispatcher()"


def test_token_from_a_url_that_does_not_parse_is_the_text_itself():
    """verify accepts odd input and lets the token check reject it."""
    assert token_from("http://[::1/a/x") == "http://[::1/a/x"


async def test_a_use_reaching_nothing_is_final_at_once_one_with_a_handler_held(
    registry, ledger
):
    """No handler: the consume is the whole use, no hold to confirm or lapse.

    With a handler, the use stays held while it runs (a crash mid-handler lets
    the hold lapse and the link work again), and is final once it returned.
    """
    bare = await registry.mint("email-confirm", subject="a@example.test")
    await registry.redeem(bare.token)
    assert bare.claims.token_id not in ledger._holds
    assert (await ledger.lookup(bare.claims.token_id)).state == "used"

    held = []

    async def handler(claims, form):
        held.append(ledger._holds.get(claims.token_id))

    registry.declare(Action(name="invite", ttl=timedelta(days=1), handler=handler))
    link = await registry.mint("invite", subject="a@example.test")
    await registry.redeem(link.token)
    assert held[0] is not None
    assert link.claims.token_id not in ledger._holds
    with pytest.raises(TokenAlreadyUsedError):
        await registry.redeem(bare.token)


async def test_a_subject_revoked_between_check_and_use_is_refused_and_not_consumed(
    registry, ledger, clock
):
    """The revocation comes after check() passed: the consume itself refuses."""
    link = await registry.mint("email-confirm", subject="a@example.test")
    await registry.check(link.token)
    clock.advance(timedelta(seconds=1))
    await registry.revoke_subject("a@example.test")
    with pytest.raises(TokenRevokedError):
        await registry.redeem(link.token)
    assert await ledger.lookup(link.claims.token_id) is None


async def test_a_redeem_losing_to_a_use_released_meanwhile_hears_in_use_not_revoked(
    issuer, clock
):
    """Found by an audit: the loser's lookup came after the winner's release.

    Nothing revoked the link, so the loser hears "being used right now" (it
    works again), never "revoked" — and the link is indeed still usable.
    """
    from actionlinks.ledger import MemoryLedger

    released = asyncio.Event()

    class SlowLookup(MemoryLedger):
        async def lookup(self, token_id):
            await released.wait()  # a round trip, as on Redis or PostgreSQL
            return await super().lookup(token_id)

        async def release(self, token_id, *, holder=None):
            await super().release(token_id, holder=holder)
            released.set()

    started = asyncio.Event()
    calls = []

    async def handler(claims, form):  # the app fails the first attempt only
        calls.append(1)
        if len(calls) == 1:
            started.set()
            await asyncio.sleep(0.01)
            raise RuntimeError("app down")

    registry = ActionRegistry(
        issuer,
        ledger=SlowLookup(clock=clock),
        base_url="https://links.example.test",
        clock=clock,
        actions=[Action(name="invite", ttl=timedelta(days=1), handler=handler)],
    )
    link = await registry.mint("invite", subject="ada")
    first = asyncio.create_task(registry.redeem(link.token))
    await started.wait()
    second = asyncio.create_task(registry.redeem(link.token))
    results = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(results[0], HandlerError)
    assert results[0].released
    assert isinstance(results[1], TokenAlreadyUsedError)
    assert results[1].used_at is None
    assert await registry.redeem(link.token) is not None
