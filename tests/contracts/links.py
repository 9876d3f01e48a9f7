"""LinkStoreContract: the guarantees every LinkStore backend proves with one suite.

A backend's test module subclasses it and provides a ``store`` fixture: a
connected, migrated :class:`~actionlinks.stores.Store` on the ``clock`` fixture,
and a ``row_count`` fixture: a coroutine function counting every record the
store keeps (to prove that anonymous traffic does not grow it).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from actionlinks.tokens import Purpose

INVITE = Purpose(name="invite", ttl=timedelta(days=7), max_ttl=timedelta(days=30))


class LinkStoreContract:
    """Subclass with ``store`` and ``row_count`` fixtures."""

    @pytest.fixture
    def links(self, store):
        return store.links

    async def test_a_link_goes_from_issued_to_viewed_to_used(self, links, issuer):
        """issued, then viewed (written behind, visible after a flush), then used."""
        claims = issuer.mint(INVITE, subject="u").claims
        await links.issued(claims)
        assert (await links.status(claims.token_id)).state == "issued"
        await links.viewed(claims.token_id)
        await links.flush()
        status = await links.status(claims.token_id)
        assert status.state == "viewed"
        assert status.issued_at == claims.issued_at
        await links.used(claims.token_id)
        assert (await links.status(claims.token_id)).state == "used"
        await links.released(claims.token_id)
        assert (await links.status(claims.token_id)).used_at is None

    async def test_unknown_link_has_no_status(self, links):
        """A jti that was never minted is unknown."""
        assert await links.status("nope") is None

    async def test_expiry_and_revocation_show_in_the_state(self, links, issuer, clock):
        """A revoked link says revoked; an expired one expired."""
        first = issuer.mint(INVITE, subject="u").claims
        second = issuer.mint(INVITE, subject="v").claims
        await links.issued(first)
        await links.issued(second)
        await links.revoked(first.token_id)
        assert (await links.status(first.token_id)).state == "revoked"
        clock.advance(timedelta(days=8))
        assert (await links.status(second.token_id)).state == "expired"

    async def test_subject_revocation_marks_earlier_unused_links(
        self, links, issuer, clock
    ):
        """revoked_subject marks links issued before the instant, to the µs."""
        earlier = issuer.mint(INVITE, subject="u").claims
        await links.issued(earlier)
        clock.advance(timedelta(microseconds=1))
        cut = clock.now()
        later = issuer.mint(INVITE, subject="u").claims
        await links.issued(later)
        await links.revoked_subject("u", action="invite", before=cut)
        assert (await links.status(earlier.token_id)).state == "revoked"
        assert (await links.status(later.token_id)).state == "issued"

    async def test_rejections_of_a_link_are_counted_per_reason(self, links, issuer):
        """A link's rejected attempts are kept as a count per reason."""
        claims = issuer.mint(INVITE, subject="u").claims
        await links.issued(claims)
        for _ in range(3):
            await links.rejected(token_id=claims.token_id, reason="already_used")
        await links.rejected(token_id=claims.token_id, reason="revoked")
        status = await links.status(claims.token_id)
        counts = {a.reason: a.count for a in status.rejected}
        assert counts == {"already_used": 3, "revoked": 1}

    async def test_anonymous_rejections_are_only_counted(
        self, links, issuer, clock, row_count
    ):
        """Issue 6 item 10: 10,000 rejections of unknown links add no rows per try."""
        claims = issuer.mint(INVITE, subject="u").claims
        await links.issued(claims)
        await links.flush()
        before = await row_count()
        for number in range(10_000):
            token_id = None if number % 2 else f"forged-{number}"
            await links.rejected(token_id=token_id, reason="malformed")
        await links.flush()
        assert await row_count() - before <= 2  # one counter per reason and hour
        since = clock.now() - timedelta(hours=1)
        assert (await links.rejection_counts(since=since))["malformed"] == 10_000
        assert await links.status("forged-2") is None
