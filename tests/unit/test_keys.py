"""Keys, the key ring and the keys file (actionlinks.keys)."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta

import pytest
from support import unb64

from actionlinks.errors import ConfigurationError, InvalidSignatureError, KeyFileError
from actionlinks.keyfile import load_keyring, save_keyring
from actionlinks.keys import KeyRing, SigningKey
from actionlinks.testing import FrozenClock
from actionlinks.tokens import Purpose, TokenIssuer

NOW = datetime(2026, 3, 1, tzinfo=UTC)
RESET = Purpose(
    name="password-reset", ttl=timedelta(minutes=30), max_ttl=timedelta(hours=2)
)


def test_short_hmac_secret_is_refused():
    """HS256 secrets under 32 bytes never make a key, and the message says why."""
    with pytest.raises(ConfigurationError, match="31 bytes is too short"):
        SigningKey.from_secret(b"x" * 31, key_id="k", created_at=NOW)
    assert SigningKey.from_secret(b"x" * 32, key_id="k", created_at=NOW).key_id == "k"


def test_short_hmac_secret_in_the_keys_file_is_refused(tmp_path):
    """A keys file with a 16-byte oct key does not load."""
    path = tmp_path / "keys.json"
    path.write_text(
        json.dumps(
            {
                "keys": [
                    {
                        "kty": "oct",
                        "kid": "k",
                        "alg": "HS256",
                        "k": "AAAAAAAAAAAAAAAAAAAAAA",
                    }
                ]
            }
        )
    )
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="too short"):
        load_keyring(path)


def test_new_ring_has_one_active_key_per_algorithm():
    """generate() makes an HS256, an EdDSA and an ES256 signer, each with a kid."""
    ring = KeyRing.generate(created_at=NOW)
    assert sorted(k.algorithm for k in ring) == ["ES256", "EdDSA", "HS256"]
    assert all(k.is_active and k.key_id for k in ring)
    assert len({k.key_id for k in ring}) == 3


def test_keys_file_round_trips_with_mode_0600(tmp_path):
    """The ring is saved as a private JWK Set readable only by its owner."""
    ring = KeyRing.generate(created_at=NOW)
    path = tmp_path / "keys.json"
    save_keyring(ring, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_keyring(path)
    assert [k.to_private_jwk() for k in loaded] == [k.to_private_jwk() for k in ring]
    assert {"keys"} == set(json.loads(path.read_text()))


def test_keys_file_is_never_overwritten_silently(tmp_path):
    """Saving without replace=True over an existing file fails and leaves it intact."""
    path = tmp_path / "keys.json"
    save_keyring(KeyRing.generate(created_at=NOW), path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        save_keyring(KeyRing.generate(created_at=NOW), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_keys_file_readable_by_others_is_refused(tmp_path):
    """Like ssh, a keys file open to group or others is refused."""
    path = tmp_path / "keys.json"
    save_keyring(KeyRing.generate(created_at=NOW), path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_keyring(path)


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"keys": {}}',
        b'{"keys": [1]}',
        b'{"keys": [{"kty": "oct", "alg": "HS256"}]}',
        b'{"keys": [{"kty": "oct", "kid": "a", "alg": "RS256", "k": "AA"}]}',
        b'{"keys": [{"kty": "EC", "kid": "a", "alg": "HS256", "k": "AA"}]}',
        (
            b'{"keys": [{"kty": "OKP", "kid": "a", "alg": "EdDSA", "crv": "Ed25519", '
            b'"x": "AA"}]}'
        ),
        (
            b'{"keys": [{"kty": "OKP", "kid": "a", "alg": "EdDSA", "crv": "Ed25519", '
            b'"x": "!", "d": "!"}]}'
        ),
        b'{"keys": [{"kty": "oct", "kid": "a", "alg": "HS256", "k": "%%%"}]}',
        b"\xff\xfe",
    ],
)
def test_malformed_keys_files_raise_key_file_errors(tmp_path, content):
    """Every malformed keys file gives a KeyFileError, never a library error."""
    path = tmp_path / "keys.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError):
        load_keyring(path)


def test_missing_keys_file_says_to_run_init(tmp_path):
    """A missing file points at 'actionlinks init'."""
    with pytest.raises(KeyFileError, match="actionlinks init"):
        load_keyring(tmp_path / "keys.json")


def test_jwks_exports_public_keys_only():
    """The JWKS has the EdDSA and ES256 public keys, no HMAC key, no private parts."""
    ring = KeyRing.generate(created_at=NOW)
    jwks = ring.jwks()
    assert sorted(k["alg"] for k in jwks["keys"]) == ["ES256", "EdDSA"]
    for jwk in jwks["keys"]:
        assert "d" not in jwk
        assert "k" not in jwk
        assert jwk["use"] == "sig"
        assert jwk["kid"] == ring.signing_key(jwk["alg"]).key_id


def test_key_repr_never_shows_the_secret():
    """Neither the secret nor the private scalar appears in a repr."""
    ring = KeyRing.generate(created_at=NOW)
    for key in ring:
        private = key.to_private_jwk()
        secret = private.get("k") or private["d"]
        assert secret not in repr(key)
        assert secret not in repr(ring)
        assert str(unb64(secret)) not in repr(key)


def test_rotated_ring_signs_with_the_new_key_and_verifies_old_tokens():
    """After rotation, new tokens use the new kid and old tokens still verify."""
    clock = FrozenClock(NOW)
    ring = KeyRing.generate(created_at=NOW)
    old = TokenIssuer(ring, issuer="https://x.test", clock=clock).mint(
        RESET, subject="u"
    )
    rotated = ring.rotated("HS256", created_at=NOW)
    issuer = TokenIssuer(rotated, issuer="https://x.test", clock=clock)
    new = issuer.mint(RESET, subject="u")
    assert new.claims.key_id != old.claims.key_id
    assert issuer.verify(old.token, RESET).key_id == old.claims.key_id
    assert rotated.get(old.claims.key_id).status == "retiring"
    retired = TokenIssuer(
        rotated.retired(old.claims.key_id), issuer="https://x.test", clock=clock
    )
    with pytest.raises(InvalidSignatureError):
        retired.verify(old.token, RESET)
    assert retired.verify(new.token, RESET)


def test_active_key_cannot_be_retired():
    """Retiring the only signer of an algorithm is refused: rotate first."""
    ring = KeyRing.generate(created_at=NOW)
    with pytest.raises(ConfigurationError, match="rotate first"):
        ring.retired(ring.signing_key("HS256").key_id)
    with pytest.raises(ConfigurationError, match="no key"):
        ring.retired("nope")


def test_ring_refuses_duplicate_kids_and_two_active_signers():
    """A ring's kids are unique and each algorithm has at most one signer."""
    a = SigningKey.generate("HS256", created_at=NOW, key_id="a")
    b = SigningKey.generate("HS256", created_at=NOW, key_id="a")
    with pytest.raises(ConfigurationError, match="duplicate"):
        KeyRing((a, b.with_status("retiring")))
    c = SigningKey.generate("HS256", created_at=NOW, key_id="c")
    with pytest.raises(ConfigurationError, match="more than one active"):
        KeyRing((a, c))


def test_issuer_without_a_signer_for_its_algorithm_fails_at_construction():
    """A ring with no active HS256 key cannot back an HS256 issuer."""
    ring = KeyRing((SigningKey.generate("EdDSA", created_at=NOW),))
    with pytest.raises(ConfigurationError, match="no active HS256"):
        TokenIssuer(ring, issuer="https://x.test")
    assert TokenIssuer(ring, issuer="https://x.test", algorithm="EdDSA")


def _valid_jwk(**changes):
    jwk = (
        KeyRing.generate(created_at=NOW, algorithms=("HS256",)).keys[0].to_private_jwk()
    )
    jwk.update(changes)
    return {k: v for k, v in jwk.items() if v is not None}


@pytest.mark.parametrize(
    "changes",
    [
        {"created": 7},
        {"created": "yesterday"},
        {"created": "2026-01-01T00:00:00"},
        {"status": "dormant"},
        {"kid": ""},
        {"kid": "k" * 65},
        {"alg": 7},
        {"k": None},
        {"k": "c2hvcnQ"},
    ],
)
def test_invalid_key_entries_are_key_file_errors(changes):
    """Every field of a key entry is checked; errors never echo the secret."""
    jwk = _valid_jwk(**changes)
    with pytest.raises(KeyFileError) as caught:
        SigningKey.from_jwk(jwk)
    if "k" in jwk:
        assert jwk["k"] not in str(caught.value)


def test_wrong_curve_and_public_only_keys_are_refused():
    """An ES256 entry must be a private P-256 key."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    p384 = dict(
        ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP384R1()), as_dict=True)
    )
    with pytest.raises(KeyFileError):
        SigningKey.from_jwk({**p384, "kid": "a", "alg": "ES256"})
    public = KeyRing.generate(created_at=NOW, algorithms=("ES256",)).jwks()["keys"][0]
    with pytest.raises(KeyFileError, match="private part"):
        SigningKey.from_jwk(public)


@pytest.mark.parametrize(
    ("algorithm", "private"),
    [("HS256", "not-bytes"), ("EdDSA", b"x" * 32), ("ES256", b"x" * 32)],
)
def test_key_material_must_match_the_algorithm(algorithm, private):
    """SigningKey refuses material of another kind for its algorithm."""
    with pytest.raises(ConfigurationError):
        SigningKey("k", algorithm=algorithm, private=private, created_at=NOW)


def test_unreadable_keys_file_is_a_key_file_error(tmp_path):
    """A keys path that is a directory gives a KeyFileError."""
    path = tmp_path / "keys.json"
    path.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_keyring(path)


def test_concurrent_key_changes_take_turns(tmp_path):
    """Audit: ten rotations at once keep ten new keys; a retirement stays."""
    from concurrent.futures import ThreadPoolExecutor

    from actionlinks.keyfile import update_keyring

    path = tmp_path / "keys.json"
    save_keyring(KeyRing.generate(created_at=NOW), path)
    old = load_keyring(path).signing_key("HS256").key_id
    update_keyring(path, lambda ring: ring.rotated("HS256", created_at=NOW))

    def change(number):
        if number == 0:
            return update_keyring(path, lambda ring: ring.retired(old))
        algorithm = ("HS256", "EdDSA", "ES256")[number % 3]
        return update_keyring(
            path, lambda ring: ring.rotated(algorithm, created_at=NOW)
        )

    with ThreadPoolExecutor(max_workers=11) as pool:
        list(pool.map(change, range(11)))
    ring = load_keyring(path)
    assert len(ring) == 3 + 1 + 10 - 1
    assert ring.get(old) is None
    lock = tmp_path / ".keys.json.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600


def test_a_creation_time_out_of_range_is_a_key_file_error(tmp_path):
    """Second audit: 0001-01-01T00:00+01:00 is refused, not an OverflowError."""
    path = tmp_path / "keys.json"
    save_keyring(KeyRing.generate(created_at=NOW), path)
    document = json.loads(path.read_text())
    document["keys"][0]["created"] = "0001-01-01T00:00:00+01:00"
    path.write_text(json.dumps(document))
    with pytest.raises(KeyFileError, match="out of range"):
        load_keyring(path)


def test_a_scheduled_key_verifies_at_once_and_signs_from_its_time():
    """rotated(signs_from=T): before T the old key signs and the new one already
    verifies (a host whose clock is ahead may sign with it); from T the new one
    signs; settled() then makes the old one verify-only, and it may be retired."""
    ring = KeyRing.generate(created_at=NOW)
    old = ring.signing_key("HS256")
    at = NOW + timedelta(seconds=20)  # within the leeway of a host behind
    scheduled = ring.rotated("HS256", created_at=NOW, signs_from=at)
    new = scheduled.get(next(k.key_id for k in scheduled if k.signs_from == at))
    assert scheduled.signing_key("HS256", now=NOW) is old
    assert scheduled.signing_key("HS256", now=at) is new
    assert scheduled.signing_key("HS256") is old  # no clock: the established one
    here = TokenIssuer(scheduled, issuer="https://x.test", clock=FrozenClock(NOW))
    ahead = TokenIssuer(scheduled, issuer="https://x.test", clock=FrozenClock(at))
    assert here.mint(RESET, subject="u").claims.key_id == old.key_id
    early = ahead.mint(RESET, subject="u")
    assert early.claims.key_id == new.key_id
    assert here.verify(early.token, RESET).key_id == new.key_id
    with pytest.raises(ConfigurationError, match="rotate first"):
        scheduled.retired(old.key_id)
    assert scheduled.settled(NOW) is scheduled
    settled = scheduled.settled(at)
    assert settled.get(old.key_id).status == "retiring"
    assert settled.get(new.key_id).signs_from is None
    assert settled.retired(old.key_id).signing_key("HS256", now=at).key_id == new.key_id


def test_one_schedule_per_algorithm_and_it_survives_the_keys_file(tmp_path):
    """A second schedule before the first signs is refused; the schedule is
    written to and read from the keys file; a ring may not hold two."""
    ring = KeyRing.generate(created_at=NOW)
    at = NOW + timedelta(minutes=1)
    scheduled = ring.rotated("EdDSA", created_at=NOW, signs_from=at)
    with pytest.raises(ConfigurationError, match="scheduled already"):
        scheduled.rotated("EdDSA", created_at=NOW, signs_from=at)
    path = tmp_path / "keys.json"
    save_keyring(scheduled, path)
    loaded = load_keyring(path)
    assert [k.signs_from for k in loaded] == [k.signs_from for k in scheduled]
    assert loaded.signing_key("EdDSA", now=at).signs_from == at
    late = SigningKey.generate("EdDSA", created_at=NOW).with_status(
        "active", signs_from=at
    )
    with pytest.raises(ConfigurationError, match="more than one scheduled"):
        KeyRing((*scheduled.keys, late))
    # Rotating after the time settles first: the scheduled key becomes the old one.
    again = scheduled.rotated("EdDSA", created_at=at)
    assert [k.status for k in again if k.algorithm == "EdDSA"] == [
        "retiring",
        "retiring",
        "active",
    ]
