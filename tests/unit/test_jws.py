"""The strict base64url codec (actionlinks.jws) against the reference decoder."""

from __future__ import annotations

import base64
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actionlinks.errors import MalformedTokenError
from actionlinks.jws import b64url_encode, decode_segment

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def reference(segment: str) -> bytes | None:
    """Decode, then accept only if re-encoding gives the same text back."""
    if len(segment) % 4 == 1:
        return None
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    encoded = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return raw if encoded == segment else None


def strict(segment: str) -> bytes | None:
    try:
        return decode_segment(segment)
    except MalformedTokenError:
        return None


@pytest.mark.parametrize("length", [1, 2, 3])
def test_every_short_segment_decodes_exactly_like_the_reference(length):
    """Exhaustively: canonical segments decode to the same bytes, others fail."""
    for combo in itertools.product(ALPHABET, repeat=length):
        segment = "".join(combo)
        assert strict(segment) == reference(segment), segment


@given(st.binary(max_size=200))
def test_encoding_round_trips_and_matches_the_stdlib(raw):
    """b64url_encode is the stdlib's unpadded urlsafe encoding; it decodes back."""
    encoded = b64url_encode(raw)
    assert encoded == base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    assert decode_segment(encoded) == raw


@given(st.text(max_size=40))
def test_arbitrary_text_decodes_like_the_reference_or_fails(text):
    """Outside the alphabet nothing decodes; inside, the reference decides."""
    expected = reference(text) if all(c in ALPHABET for c in text) else None
    assert strict(text) == expected
