"""LedgerContract: the guarantees every Ledger backend proves with one suite.

A backend's test module subclasses it and provides a ``make_ledger`` fixture
returning a factory ``(clock) -> Ledger``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from actionlinks.ledger import ALL_ACTIONS


class LedgerContract:
    """Subclass with a ``make_ledger`` fixture to run these against a backend."""

    @pytest.fixture
    def backend(self, make_ledger, clock):
        return make_ledger(clock)

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
