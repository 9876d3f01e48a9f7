"""Form nonces (actionlinks.web.nonces): itsdangerous' bytes, bound and short-lived."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actionlinks.testing import FrozenClock
from actionlinks.web.app import ClockSigner
from actionlinks.web.nonces import FormNonces

OLD, NEW = b"o" * 32, b"n" * 32


def _theirs(clock, secrets):
    return ClockSigner(
        secrets, clock=clock, key_derivation="none", digest_method=hashlib.sha256
    )


@given(token_id=st.text(min_size=1, max_size=40))
def test_nonces_are_itsdangerous_timestamp_signatures_byte_for_byte(token_id):
    """Forms opened before the change post after it, and the other way round."""

    clock = FrozenClock(datetime(2026, 12, 2, 12, 0, 0, 999_999, tzinfo=UTC))
    ours = FormNonces([OLD, NEW], clock=clock, max_age=3600)
    theirs = _theirs(clock, [OLD, NEW])
    assert ours.sign(token_id) == theirs.sign(token_id).decode()
    assert ours.is_valid(theirs.sign(token_id).decode(), token_id)
    assert theirs.unsign(ours.sign(token_id), max_age=3600) == token_id.encode()


def test_a_nonce_is_good_for_its_link_and_its_hour_only(clock):
    """Another link's nonce, a tampered one, an old or future one: all refused."""
    nonces = FormNonces([OLD, NEW], clock=clock, max_age=3600)
    nonce = nonces.sign("link-a")
    assert nonces.is_valid(nonce, "link-a")
    assert not nonces.is_valid(nonce, "link-b")
    assert not nonces.is_valid(
        nonce[:-1] + ("A" if nonce[-1] != "A" else "B"), "link-a"
    )
    clock.advance(timedelta(seconds=3600))
    assert nonces.is_valid(nonce, "link-a")
    clock.advance(timedelta(seconds=1))
    assert not nonces.is_valid(nonce, "link-a")
    clock.advance(timedelta(hours=-3))
    assert not nonces.is_valid(nonce, "link-a")  # signed in the future


def test_nonces_of_a_retired_key_still_post_and_unknown_keys_do_not(clock):
    """After a rotation the old key verifies; a nonce of another ring never."""
    before = FormNonces([OLD], clock=clock, max_age=3600).sign("link")
    assert FormNonces([OLD, NEW], clock=clock, max_age=3600).is_valid(before, "link")
    assert not FormNonces([NEW], clock=clock, max_age=3600).is_valid(before, "link")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "..",
        "a.b.c",
        "link..",
        "link.!!!!.x",
        "é.é.é",
        "\udcff",
        chr(0xD800),  # a lone high surrogate: not even encodable
        "x" * 10_000,
    ],
)
def test_malformed_nonces_are_refused_without_an_error(clock, garbage):
    """Whatever a form posts as nonce is a no, never an exception."""
    nonces = FormNonces([OLD], clock=clock, max_age=3600)
    assert not nonces.is_valid(garbage, "link")
    assert "o" * 32 not in repr(nonces)


def test_a_key_scheduled_to_sign_later_signs_no_form_before_its_time(clock):
    """Found by an audit: the scheduled key (last in the ring) signed the forms.

    During ``--activate-after`` a host that has not loaded the new keys yet
    must accept the forms of a host that has.
    """
    from actionlinks.keys import KeyRing
    from actionlinks.web.nonces import form_keys

    old = KeyRing.generate(created_at=clock.now())
    new = old.rotated(
        "HS256", created_at=clock.now(), signs_from=clock.now() + timedelta(seconds=60)
    )

    def nonces(ring):
        secrets = [key.derive_secret(b"forms/confirm") for key in form_keys(ring)]
        return FormNonces(secrets, clock=clock, max_age=3600)

    assert nonces(old).is_valid(nonces(new).sign("jti"), "jti")
    assert nonces(new).is_valid(nonces(old).sign("jti"), "jti")
