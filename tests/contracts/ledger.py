"""LedgerContract: the guarantees every Ledger backend proves with one suite.

A backend's test module subclasses it and provides a ``store`` fixture: a
connected, migrated :class:`~actionlinks.stores.Store` on the ``clock`` fixture.
The suite proves the ledger alone, then the registry driving it (cancellation,
revocation during a use, sub-second ordering), so every backend inherits the
redemption guarantees too.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import anyio
import pytest

from actionlinks.actions import Action
from actionlinks.errors import HandlerError, TokenRevokedError
from actionlinks.ledger import ALL_ACTIONS, Issue
from actionlinks.registry import ActionRegistry

BASE = "https://links.example.test"


class LedgerContract:
    """Subclass with a ``store`` fixture to run these against a backend."""

    @pytest.fixture
    def backend(self, store):
        return store.ledger

    @pytest.fixture
    def registry(self, store, issuer, clock):
        return ActionRegistry(
            issuer, ledger=store.ledger, base_url=BASE, clock=clock, journal=store.links
        )

    async def test_first_consume_wins_and_second_loses(self, backend, clock):
        """consume() is True once, then False."""
        expires = clock.now() + timedelta(minutes=5)
        assert await backend.consume("t1", expires_at=expires) is True
        assert await backend.consume("t1", expires_at=expires) is False
        assert await backend.consume("t2", expires_at=expires) is True

    async def test_concurrent_consumes_of_one_token_succeed_exactly_once(
        self, backend, clock
    ):
        """Of 50 concurrent consume() calls for one id, exactly one returns True."""
        expires = clock.now() + timedelta(minutes=5)
        results = await asyncio.gather(
            *(backend.consume("same", expires_at=expires) for _ in range(50))
        )
        assert results.count(True) == 1

    async def test_lookup_tells_when_a_token_was_used(self, backend, clock):
        """A used token's entry records the state and the instant."""
        assert await backend.lookup("t") is None
        await backend.consume("t", expires_at=clock.now() + timedelta(minutes=5))
        entry = await backend.lookup("t")
        assert entry.state == "used"
        assert abs(entry.at - clock.now()) < timedelta(seconds=1)

    async def test_release_makes_the_token_usable_again(self, backend, clock):
        """release() undoes a use, so a retry can consume."""
        expires = clock.now() + timedelta(minutes=5)
        await backend.consume("t", expires_at=expires)
        await backend.release("t")
        assert await backend.lookup("t") is None
        assert await backend.consume("t", expires_at=expires) is True

    async def test_revoked_token_cannot_be_consumed_or_released(self, backend, clock):
        """Revocation blocks consumption, and release() never undoes it."""
        expires = clock.now() + timedelta(minutes=5)
        await backend.revoke("t", expires_at=expires)
        assert await backend.consume("t", expires_at=expires) is False
        await backend.release("t")
        assert (await backend.lookup("t")).state == "revoked"

    async def test_revoking_a_used_token_keeps_it_recorded_as_used(
        self, backend, clock
    ):
        """A used token stays 'used' (with its time) when revoked afterwards."""
        expires = clock.now() + timedelta(minutes=5)
        await backend.consume("t", expires_at=expires)
        await backend.revoke("t", expires_at=expires)
        assert (await backend.lookup("t")).state == "used"

    async def test_subject_revocation_covers_earlier_tokens_only(self, backend, clock):
        """Tokens issued before the revocation instant are revoked; later ones not."""
        now = clock.now()
        await backend.revoke_subject(
            "user:1", action="invite", before=now, until=now + timedelta(days=1)
        )
        earlier = now - timedelta(seconds=1)
        later = now + timedelta(seconds=1)
        assert await backend.is_subject_revoked(
            "user:1", action="invite", issued_at=earlier
        )
        assert not await backend.is_subject_revoked(
            "user:1", action="invite", issued_at=later
        )
        assert not await backend.is_subject_revoked(
            "user:1", action="email-confirm", issued_at=earlier
        )
        assert not await backend.is_subject_revoked(
            "user:2", action="invite", issued_at=earlier
        )

    async def test_subject_revocation_of_all_actions(self, backend, clock):
        """ALL_ACTIONS revokes the subject's tokens of every action."""
        now = clock.now()
        await backend.revoke_subject(
            "user:1", action=ALL_ACTIONS, before=now, until=now + timedelta(days=1)
        )
        for action in ("invite", "password-reset"):
            assert await backend.is_subject_revoked(
                "user:1", action=action, issued_at=now - timedelta(seconds=1)
            )

    @pytest.mark.parametrize("revoked_action", ["invite", ALL_ACTIONS])
    async def test_a_consume_is_refused_when_its_subjects_links_are_revoked(
        self, backend, clock, revoked_action
    ):
        """The revocation check and the use are one atomic step.

        Covered (issued before the cut-off): refused, and nothing recorded. Issued
        after it, another subject or another action: taken as usual.
        """
        now = clock.now()
        expires = now + timedelta(minutes=5)
        await backend.revoke_subject(
            "u", action=revoked_action, before=now, until=now + timedelta(days=1)
        )

        def issue(subject="u", action="invite", issued_at=now - timedelta(seconds=1)):
            return Issue(subject=subject, action=action, issued_at=issued_at)

        assert not await backend.consume("old", expires_at=expires, issue=issue())
        assert await backend.lookup("old") is None
        assert await backend.consume(
            "new", expires_at=expires, issue=issue(issued_at=now)
        )
        assert await backend.consume("other", expires_at=expires, issue=issue("v"))
        assert await backend.consume(
            "unchecked", expires_at=expires
        )  # no issue: the token id alone
        taken = await backend.consume(
            "reset", expires_at=expires, issue=issue(action="password-reset")
        )
        assert taken is (revoked_action != ALL_ACTIONS)

    async def test_later_revocation_extends_an_earlier_one(self, backend, clock):
        """A second revocation moves the cut-off later, never earlier."""
        now = clock.now()
        until = now + timedelta(days=1)
        await backend.revoke_subject("u", action="invite", before=now, until=until)
        await backend.revoke_subject(
            "u", action="invite", before=now - timedelta(hours=1), until=until
        )
        assert await backend.is_subject_revoked(
            "u", action="invite", issued_at=now - timedelta(minutes=1)
        )

    async def test_expired_entries_are_purged(self, backend, clock):
        """Entries past their expiry are forgotten by later operations."""
        await backend.consume("old", expires_at=clock.now() + timedelta(minutes=1))
        clock.advance(timedelta(minutes=10))
        await backend.consume("new", expires_at=clock.now() + timedelta(minutes=1))
        assert await backend.lookup("old") is None
        assert await backend.lookup("new") is not None

    async def test_standing_reports_use_then_subject_revocation(self, backend, clock):
        """standing() gives the token's own entry first, else its subject's."""
        now = clock.now()
        issued = now - timedelta(seconds=5)
        expires = now + timedelta(minutes=5)
        assert (
            await backend.standing("t", subject="u", action="a", issued_at=issued)
            is None
        )
        await backend.revoke_subject(
            "u", action="a", before=now, until=now + timedelta(days=1)
        )
        revoked = await backend.standing("t", subject="u", action="a", issued_at=issued)
        assert revoked.state == "revoked"
        assert (
            await backend.standing(
                "t", subject="u", action="a", issued_at=now + timedelta(seconds=1)
            )
            is None
        )
        await backend.consume("t", expires_at=expires)
        used = await backend.standing("t", subject="u", action="a", issued_at=issued)
        assert used.state == "used"

    async def test_release_keeps_a_revocation_that_came_during_the_use(
        self, backend, clock
    ):
        """Issue 6 item 7: revoke while the use is pending, then release: revoked."""
        expires = clock.now() + timedelta(minutes=5)
        assert await backend.consume("t", expires_at=expires)
        await backend.revoke("t", expires_at=expires)
        assert (await backend.lookup("t")).state == "used"
        await backend.release("t")
        assert (await backend.lookup("t")).state == "revoked"
        assert await backend.consume("t", expires_at=expires) is False

    async def test_revocation_orders_tokens_to_the_microsecond(self, backend, clock):
        """Issue 6 item 1: issued a microsecond before dies, at the instant lives."""
        now = clock.now()
        await backend.revoke_subject(
            "u", action="a", before=now, until=now + timedelta(days=1)
        )
        just_before = now - timedelta(microseconds=1)
        assert await backend.is_subject_revoked("u", action="a", issued_at=just_before)
        assert not await backend.is_subject_revoked("u", action="a", issued_at=now)
        assert (
            await backend.standing("t", subject="u", action="a", issued_at=just_before)
        ).state == "revoked"
        assert (
            await backend.standing("t", subject="u", action="a", issued_at=now) is None
        )

    async def test_revoke_then_mint_within_a_second_gives_a_live_link(
        self, registry, clock
    ):
        """Issue 6 item 1: 300 ms after revoking a subject, a new link works."""
        clock.advance(timedelta(milliseconds=100))
        revoked_at = clock.now()
        await registry.revoke_subject("u")
        clock.advance(timedelta(milliseconds=300))
        link = await registry.mint("invite", subject="u")
        same_second = int(revoked_at.timestamp())
        assert int(link.claims.issued_at.timestamp()) == same_second
        assert await registry.redeem(link.token)

    async def test_mint_then_revoke_within_a_second_kills_the_link(
        self, registry, clock
    ):
        """Issue 6 item 1: a link minted 300 ms before the revocation dies."""
        clock.advance(timedelta(milliseconds=100))
        link = await registry.mint("invite", subject="u")
        clock.advance(timedelta(milliseconds=300))
        await registry.revoke_subject("u", action="invite")
        with pytest.raises(TokenRevokedError):
            await registry.redeem(link.token)

    async def test_two_sign_in_links_in_one_second_leave_only_the_newest(
        self, registry, clock
    ):
        """Minting that revokes earlier links works at sub-second spacing too."""
        first = await registry.mint("magic-signin", subject="u")
        clock.advance(timedelta(milliseconds=200))
        second = await registry.mint("magic-signin", subject="u")
        with pytest.raises(TokenRevokedError):
            await registry.redeem(first.token)
        assert await registry.redeem(second.token)

    async def test_cancelled_redemption_leaves_the_link_usable(self, registry, backend):
        """Issue 6 item 7: a redemption cancelled in a cancel scope releases."""
        started = anyio.Event()

        async def slow(claims, form):
            started.set()
            await anyio.sleep(3600)

        registry.declare(Action(name="invite", ttl=timedelta(days=1), handler=slow))
        link = await registry.mint("invite", subject="u")
        async with anyio.create_task_group() as tasks:
            with anyio.CancelScope() as scope:
                tasks.start_soon(registry.redeem, link.token)
                await started.wait()
                scope.cancel()
            tasks.cancel_scope.cancel()
        assert await backend.lookup(link.claims.token_id) is None
        registry.declare(Action(name="invite", ttl=timedelta(days=1)))
        assert await registry.redeem(link.token)

    async def test_redemption_cancelled_in_its_own_scope_releases(
        self, registry, backend
    ):
        """The redeem call itself inside move_on_after: nothing stays used."""

        async def slow(claims, form):
            await anyio.sleep(3600)

        registry.declare(Action(name="invite", ttl=timedelta(days=1), handler=slow))
        link = await registry.mint("invite", subject="u")
        with anyio.move_on_after(0.05):
            await registry.redeem(link.token)
        assert await backend.lookup(link.claims.token_id) is None
        status = await registry._journal.status(link.claims.token_id)
        assert status.used_at is None

    async def test_revocation_during_a_failing_handler_stays(self, registry, backend):
        """Issue 6 item 7: revoke while the handler runs; it fails; still revoked."""

        async def revoked_then_fails(claims, form):
            await registry.revoke(claims.token_id)
            raise RuntimeError("the app is down")

        registry.declare(
            Action(name="invite", ttl=timedelta(days=1), handler=revoked_then_fails)
        )
        link = await registry.mint("invite", subject="u")
        with pytest.raises(HandlerError) as caught:
            await registry.redeem(link.token)
        assert caught.value.released
        assert (await backend.lookup(link.claims.token_id)).state == "revoked"
        registry.declare(Action(name="invite", ttl=timedelta(days=1)))
        with pytest.raises(TokenRevokedError):
            await registry.redeem(link.token)

    async def test_a_held_use_blocks_others_until_confirmed_or_lapsed(
        self, backend, clock
    ):
        """Audit: a use is held while its handler runs; a lapsed hold frees it."""
        from actionlinks.ledger import Hold

        expires = clock.now() + timedelta(days=1)
        first = Hold(holder="a", until=clock.now() + timedelta(minutes=5))
        assert await backend.consume("t", expires_at=expires, hold=first)
        assert (await backend.lookup("t")).state == "held"
        second = Hold(holder="b", until=clock.now() + timedelta(minutes=10))
        assert not await backend.consume("t", expires_at=expires, hold=second)
        await backend.release("t", holder="b")  # not b's hold: nothing happens
        assert (await backend.lookup("t")).state == "held"
        clock.advance(timedelta(minutes=5))
        assert await backend.lookup("t") is None
        second = Hold(holder="b", until=clock.now() + timedelta(minutes=5))
        assert await backend.consume("t", expires_at=expires, hold=second)
        await backend.confirm("t", holder="a")  # too late: b holds it now
        assert (await backend.lookup("t")).state == "held"
        await backend.confirm("t", holder="b")
        clock.advance(timedelta(hours=1))
        assert (await backend.lookup("t")).state == "used"
        assert not await backend.consume("t", expires_at=expires)

    async def test_a_lapsed_hold_keeps_a_revocation(self, backend, clock):
        """Revoked while held by a process that then died: revoked, not free."""
        from actionlinks.ledger import Hold

        expires = clock.now() + timedelta(days=1)
        hold = Hold(holder="a", until=clock.now() + timedelta(minutes=5))
        assert await backend.consume("t", expires_at=expires, hold=hold)
        await backend.revoke("t", expires_at=expires)
        clock.advance(timedelta(minutes=6))
        assert (await backend.lookup("t")).state == "revoked"
        assert not await backend.consume("t", expires_at=expires)

    async def test_a_redemption_whose_process_died_can_be_redone(
        self, registry, backend, clock
    ):
        """Audit: a link held by a crashed redemption works again after the hold."""
        from actionlinks.errors import TokenAlreadyUsedError
        from actionlinks.ledger import Hold
        from actionlinks.registry import HOLD_FOR

        link = await registry.mint("invite", subject="u")
        crashed = Hold(holder="dead-process", until=clock.now() + HOLD_FOR)
        assert await backend.consume(
            link.claims.token_id, expires_at=link.claims.expires_at, hold=crashed
        )
        with pytest.raises(TokenAlreadyUsedError, match="being used"):
            await registry.redeem(link.token)
        clock.advance(HOLD_FOR)
        assert await registry.redeem(link.token)
        status = await registry._journal.status(link.claims.token_id)
        assert status.state == "used"
        with pytest.raises(TokenAlreadyUsedError) as caught:
            await registry.redeem(link.token)
        assert caught.value.used_at is not None

    async def test_a_long_handler_keeps_its_hold(
        self, registry, backend, clock, monkeypatch
    ):
        """Second audit: a live holder extends its hold; nobody takes over."""
        from actionlinks import registry as registry_module
        from actionlinks.errors import TokenAlreadyUsedError

        monkeypatch.setattr(registry_module, "HOLD_FOR", timedelta(seconds=0.3))
        release = anyio.Event()
        runs = []

        async def slow(claims, form):
            runs.append(1)
            await release.wait()

        registry.declare(Action(name="invite", ttl=timedelta(days=1), handler=slow))
        link = await registry.mint("invite", subject="u")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(registry.redeem, link.token)
            await anyio.sleep(0.05)
            for _ in range(3):  # well past the hold, in the clock's time and ours
                clock.advance(timedelta(seconds=1))
                await anyio.sleep(0.2)
                with pytest.raises(TokenAlreadyUsedError):
                    await registry.redeem(link.token)
            release.set()
        assert runs == [1]
        assert (await backend.lookup(link.claims.token_id)).state == "used"
