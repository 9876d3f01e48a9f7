"""Signing keys and the key ring: HS256, EdDSA (Ed25519) and ES256.

Each key has one algorithm, fixed when it is made; a token's header never
chooses it. A ring holds one active (signing) key per algorithm and any number
of retiring, verify-only keys, all selected by ``kid``. :meth:`KeyRing.jwks`
exports only the public keys, for any stock JOSE library to verify EdDSA and
ES256 tokens; :mod:`actionlinks.keyfile` stores the ring with its private parts.

PyJWT's JWK and signature primitives live here; the token format is in
:mod:`actionlinks.tokens`.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast, get_args

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from jwt.algorithms import ECAlgorithm, OKPAlgorithm
from jwt.exceptions import InvalidKeyError, PyJWKError

from actionlinks.errors import ConfigurationError, KeyFileError, MalformedTokenError
from actionlinks.jws import b64url_encode, decode_segment
from actionlinks.mac import PrefixedMac

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

Algorithm: TypeAlias = Literal["HS256", "EdDSA", "ES256"]
KeyStatus: TypeAlias = Literal["active", "retiring"]

ALGORITHMS: tuple[Algorithm, ...] = get_args(Algorithm)
MIN_HMAC_SECRET_BYTES = 32
_KEY_ID_BYTES = 6
_EC = ECAlgorithm(ECAlgorithm.SHA256, ec.SECP256R1)
_OKP = OKPAlgorithm()


def _b64url_decode(text: str) -> bytes:
    try:
        return decode_segment(text)
    except (MalformedTokenError, binascii.Error) as exc:
        raise KeyFileError("a key's base64url value is malformed") from exc


def parse_algorithm(name: str) -> Algorithm:
    """Return ``name`` as an :data:`Algorithm`.

    Raises:
        ConfigurationError: for any other algorithm name.
    """
    for algorithm in ALGORITHMS:
        if name == algorithm:
            return algorithm
    raise ConfigurationError(
        f"unsupported algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}"
    )


class SigningKey:
    """One key of one algorithm, with its ``kid``, status and creation time.

    An active key may be *scheduled*: it verifies at once but signs only from
    ``signs_from`` on (``keys rotate --activate-after``), so that every host
    of a fleet loads it before any token carries it. The secret or private
    key never appears in the repr. Build keys with :meth:`generate`,
    :meth:`from_secret` or :meth:`from_jwk`.
    """

    __slots__ = (
        "_hmac",
        "_private",
        "_public",
        "algorithm",
        "created_at",
        "key_id",
        "signs_from",
        "status",
    )

    def __init__(  # noqa: PLR0913 - key material and its bookkeeping, keyword-only
        self,
        key_id: str,
        *,
        algorithm: Algorithm,
        private: bytes | Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
        created_at: datetime,
        status: KeyStatus = "active",
        signs_from: datetime | None = None,
    ) -> None:
        """Wrap key material; prefer the ``generate``/``from_*`` constructors."""
        if not key_id or len(key_id) > 64 or not key_id.isascii():
            raise ConfigurationError("a key id must be 1-64 ASCII characters")
        self.key_id = key_id
        self.algorithm = algorithm
        self.created_at = created_at
        self.status: KeyStatus = status
        self.signs_from = signs_from
        self._private = private
        self._hmac: hmac.HMAC | None = None
        self._public: Ed25519PublicKey | ec.EllipticCurvePublicKey | None = None
        if algorithm == "HS256":
            if not isinstance(private, bytes):
                raise ConfigurationError("an HS256 key needs a byte secret")
            if len(private) < MIN_HMAC_SECRET_BYTES:
                raise ConfigurationError(
                    f"an HS256 secret of {len(private)} bytes is too short; "
                    f"at least {MIN_HMAC_SECRET_BYTES} random bytes are required"
                )
            self._hmac = hmac.new(private, digestmod=hashlib.sha256)
        elif algorithm == "EdDSA":
            if not isinstance(private, Ed25519PrivateKey):
                raise ConfigurationError("an EdDSA key needs an Ed25519 private key")
            self._public = private.public_key()
        else:
            if not (
                isinstance(private, ec.EllipticCurvePrivateKey)
                and isinstance(private.curve, ec.SECP256R1)
            ):
                raise ConfigurationError("an ES256 key needs a P-256 private key")
            self._public = private.public_key()

    @classmethod
    def generate(
        cls, algorithm: Algorithm, *, created_at: datetime, key_id: str | None = None
    ) -> SigningKey:
        """Make a new random key of ``algorithm``."""
        private: bytes | Ed25519PrivateKey | ec.EllipticCurvePrivateKey
        if algorithm == "HS256":
            private = secrets.token_bytes(MIN_HMAC_SECRET_BYTES)
        elif algorithm == "EdDSA":
            private = Ed25519PrivateKey.generate()
        else:
            private = ec.generate_private_key(ec.SECP256R1())
        return cls(
            key_id or new_key_id(),
            algorithm=algorithm,
            private=private,
            created_at=created_at,
        )

    @classmethod
    def from_secret(
        cls, secret: bytes, *, key_id: str, created_at: datetime
    ) -> SigningKey:
        """Make an HS256 key from a secret of at least 32 bytes.

        Raises:
            ConfigurationError: the secret is shorter than 32 bytes.
        """
        return cls(key_id, algorithm="HS256", private=secret, created_at=created_at)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        """Load a private JWK as written by :meth:`to_private_jwk`.

        Raises:
            KeyFileError: the JWK is malformed, public-only or of another kind.
        """
        key_id = jwk.get("kid")
        algorithm = jwk.get("alg")
        if not isinstance(key_id, str) or not isinstance(algorithm, str):
            raise KeyFileError("every key needs a string 'kid' and 'alg'")
        try:
            alg = parse_algorithm(algorithm)
        except ConfigurationError as exc:
            raise KeyFileError(f"key {key_id!r}: {exc}") from exc
        status = jwk.get("status", "active")
        if status not in ("active", "retiring"):
            raise KeyFileError(f"key {key_id!r}: status must be active or retiring")
        created_at = _parse_created(jwk.get("created"), key_id)
        signs_from = (
            None
            if jwk.get("signs_from") is None
            else _parse_created(jwk["signs_from"], key_id, name="signs_from")
        )
        private = _private_from_jwk(jwk, alg, key_id)
        try:
            return cls(
                key_id,
                algorithm=alg,
                private=private,
                created_at=created_at,
                status=cast("KeyStatus", status),  # checked just above
                signs_from=signs_from,
            )
        except ConfigurationError as exc:
            raise KeyFileError(f"key {key_id!r}: {exc}") from exc

    @property
    def is_active(self) -> bool:
        """Whether this key signs new tokens (otherwise it only verifies)."""
        return self.status == "active"

    def signs_at(self, now: datetime | None) -> bool:
        """Whether it signs at ``now`` (``None``: scheduled keys do not yet)."""
        if not self.is_active:
            return False
        return self.signs_from is None or (now is not None and self.signs_from <= now)

    def with_status(
        self, status: KeyStatus, *, signs_from: datetime | None = None
    ) -> SigningKey:
        """Return the same key with another status (and schedule)."""
        return SigningKey(
            self.key_id,
            algorithm=self.algorithm,
            private=self._private,
            created_at=self.created_at,
            status=status,
            signs_from=signs_from,
        )

    def sign(self, message: bytes) -> bytes:
        """Sign ``message``; JWS signature bytes (raw r||s for ES256)."""
        if self._hmac is not None:
            mac = self._hmac.copy()
            mac.update(message)
            return mac.digest()
        if isinstance(self._private, Ed25519PrivateKey):
            return _OKP.sign(message, self._private)
        return _EC.sign(message, cast("ec.EllipticCurvePrivateKey", self._private))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``message``."""
        if self._hmac is not None:
            mac = self._hmac.copy()
            mac.update(message)
            return hmac.compare_digest(mac.digest(), signature)
        if isinstance(self._public, Ed25519PublicKey):
            return _OKP.verify(message, self._public, signature)
        return _EC.verify(
            message, cast("ec.EllipticCurvePublicKey", self._public), signature
        )

    def prefixed_mac(self, prefix: bytes) -> PrefixedMac | None:
        """An HS256 key's MAC with ``prefix`` absorbed; ``None`` for other keys."""
        if not isinstance(self._private, bytes):
            return None
        return PrefixedMac(self._private, prefix)

    def derive_secret(self, label: bytes) -> bytes:
        """Derive a 32-byte secret for ``label`` from this key's private part.

        Used for state fingerprints: a retired key takes its derived secrets
        with it.
        """
        if isinstance(self._private, bytes):
            material = self._private
        elif isinstance(self._private, Ed25519PrivateKey):
            material = self._private.private_bytes_raw()
        else:
            material = self._private.private_numbers().private_value.to_bytes(32)
        return hmac.digest(material, b"actionlinks/" + label, "sha256")

    def to_public_jwk(self) -> dict[str, Any] | None:
        """The public JWK, or ``None`` for an HS256 key (it has no public part)."""
        if self._public is None:
            return None
        if isinstance(self._public, Ed25519PublicKey):
            jwk = _OKP.to_jwk(self._public, as_dict=True)
        else:
            jwk = _EC.to_jwk(self._public, as_dict=True)
        return {**jwk, "kid": self.key_id, "alg": self.algorithm, "use": "sig"}

    def to_private_jwk(self) -> dict[str, Any]:
        """The JWK with private parts, for the keys file only."""
        jwk: dict[str, Any]
        if isinstance(self._private, bytes):
            jwk = {"kty": "oct", "k": b64url_encode(self._private)}
        elif isinstance(self._private, Ed25519PrivateKey):
            jwk = dict(_OKP.to_jwk(self._private, as_dict=True))
        else:
            jwk = dict(_EC.to_jwk(self._private, as_dict=True))
        jwk.update(
            kid=self.key_id,
            alg=self.algorithm,
            use="sig",
            status=self.status,
            created=self.created_at.isoformat(),
        )
        if self.signs_from is not None:
            jwk["signs_from"] = self.signs_from.isoformat()
        return jwk

    def __repr__(self) -> str:
        """Show kid, algorithm and status, never the key material."""
        return (
            f"SigningKey(key_id={self.key_id!r}, algorithm={self.algorithm!r}, "
            f"status={self.status!r})"
        )


def new_key_id() -> str:
    """A short random key id (48 bits, base64url), never starting with "-"."""
    while True:
        key_id = b64url_encode(secrets.token_bytes(_KEY_ID_BYTES))
        if not key_id.startswith("-"):
            return key_id


def _parse_created(value: object, key_id: str, *, name: str = "created") -> datetime:
    if value is None:
        return datetime.fromtimestamp(0, UTC)
    if not isinstance(value, str):
        raise KeyFileError(f"key {key_id!r}: '{name}' must be an ISO 8601 string")
    try:
        created = datetime.fromisoformat(value)
    except ValueError as exc:
        raise KeyFileError(f"key {key_id!r}: '{name}' is not ISO 8601") from exc
    if created.tzinfo is None:
        raise KeyFileError(f"key {key_id!r}: '{name}' needs a UTC offset")
    try:
        return created.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise KeyFileError(f"key {key_id!r}: '{name}' is out of range") from exc


def _private_from_jwk(
    jwk: Mapping[str, Any], algorithm: Algorithm, key_id: str
) -> bytes | Ed25519PrivateKey | ec.EllipticCurvePrivateKey:
    expected = {"HS256": "oct", "EdDSA": "OKP", "ES256": "EC"}[algorithm]
    if jwk.get("kty") != expected:
        raise KeyFileError(f"key {key_id!r}: {algorithm} needs kty {expected!r}")
    if algorithm == "HS256":
        secret = jwk.get("k")
        if not isinstance(secret, str):
            raise KeyFileError(f"key {key_id!r}: an oct key needs 'k'")
        return _b64url_decode(secret)
    if "d" not in jwk:
        raise KeyFileError(f"key {key_id!r}: the private part 'd' is missing")
    parsed = {k: v for k, v in jwk.items() if k not in ("status", "created")}
    try:
        if algorithm == "EdDSA":
            key: object = _OKP.from_jwk(parsed)
        else:
            key = _EC.from_jwk(parsed)
    except (InvalidKeyError, PyJWKError, ValueError, TypeError, KeyError) as exc:
        raise KeyFileError(f"key {key_id!r}: not a valid {algorithm} JWK") from exc
    if isinstance(key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        return key
    raise KeyFileError(f"key {key_id!r}: not a private {algorithm} key")


@dataclass(frozen=True, slots=True)
class KeyRing:
    """One active signing key per algorithm plus verify-only retiring keys.

    An algorithm may also have one scheduled key, which takes over signing
    from its ``signs_from`` on. Rings are immutable: :meth:`rotated`,
    :meth:`settled` and :meth:`retired` return new ones.

    Raises:
        ConfigurationError: duplicate ``kid``s, or two active (or two
            scheduled) keys of one algorithm.
    """

    keys: tuple[SigningKey, ...]

    def __post_init__(self) -> None:
        """Check kids are unique; each algorithm has one signer and one next."""
        seen: set[str] = set()
        active: set[tuple[str, bool]] = set()
        for key in self.keys:
            if key.key_id in seen:
                raise ConfigurationError(f"duplicate key id {key.key_id!r}")
            seen.add(key.key_id)
            if key.is_active:
                kind = (key.algorithm, key.signs_from is not None)
                if kind in active:
                    which = "scheduled" if kind[1] else "active"
                    raise ConfigurationError(
                        f"more than one {which} {key.algorithm} key"
                    )
                active.add(kind)

    @classmethod
    def generate(
        cls, *, created_at: datetime, algorithms: Iterable[Algorithm] = ALGORITHMS
    ) -> KeyRing:
        """A new ring with one fresh active key per algorithm."""
        return cls(
            tuple(SigningKey.generate(a, created_at=created_at) for a in algorithms)
        )

    def __iter__(self) -> Iterator[SigningKey]:
        """Iterate over the keys, oldest first."""
        return iter(self.keys)

    def __len__(self) -> int:
        """The number of keys."""
        return len(self.keys)

    def get(self, key_id: str) -> SigningKey | None:
        """The key with ``key_id``, or ``None``."""
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None

    def signing_key(
        self, algorithm: Algorithm, *, now: datetime | None = None
    ) -> SigningKey:
        """The key that signs with ``algorithm`` at ``now``.

        A scheduled key once its time has come, else the established one;
        without ``now``, the established one.

        Raises:
            ConfigurationError: the ring has no active key of that algorithm.
        """
        signing = [k for k in self.keys if k.algorithm == algorithm and k.signs_at(now)]
        if signing:
            return max(signing, key=lambda k: k.signs_from is not None)
        raise ConfigurationError(
            f"no active {algorithm} key; run 'actionlinks keys rotate --alg "
            f"{algorithm}'"
        )

    def rotated(
        self,
        algorithm: Algorithm,
        *,
        created_at: datetime,
        signs_from: datetime | None = None,
    ) -> KeyRing:
        """A ring whose new key signs ``algorithm``; the old one only verifies.

        With ``signs_from`` the new key verifies at once but signs from then
        on; the old one signs until then.

        Raises:
            ConfigurationError: a key of ``algorithm`` is scheduled already.
        """
        ring = self.settled(created_at)
        fresh = SigningKey.generate(algorithm, created_at=created_at)
        while ring.get(fresh.key_id) is not None:  # pragma: no cover - 2**-48
            fresh = SigningKey.generate(algorithm, created_at=created_at)
        if signs_from is not None and signs_from > created_at:
            if any(
                k.algorithm == algorithm and k.is_active and k.signs_from for k in ring
            ):
                raise ConfigurationError(
                    f"a new {algorithm} key is scheduled already; rotate again "
                    "once it signs"
                )
            return KeyRing(
                (*ring.keys, fresh.with_status("active", signs_from=signs_from))
            )
        kept = tuple(
            key.with_status("retiring")
            if key.algorithm == algorithm and key.is_active
            else key
            for key in ring.keys
        )
        return KeyRing((*kept, fresh))

    def settled(self, now: datetime) -> KeyRing:
        """The ring with each scheduled key whose time has come the signer.

        The key it replaces becomes verify-only.
        """
        due = {
            key.algorithm
            for key in self.keys
            if key.is_active and key.signs_from is not None and key.signs_from <= now
        }
        if not due:
            return self
        return KeyRing(
            tuple(
                key
                if key.algorithm not in due or not key.is_active
                else (
                    key.with_status("active")
                    if key.signs_from is not None
                    else key.with_status("retiring")
                )
                for key in self.keys
            )
        )

    def retired(self, key_id: str) -> KeyRing:
        """A ring without ``key_id``: tokens it signed stop verifying.

        Raises:
            ConfigurationError: no such key, or it is the active signer (rotate
                first, so that the algorithm keeps a signing key).
        """
        key = self.get(key_id)
        if key is None:
            raise ConfigurationError(f"no key with id {key_id!r}")
        if key.is_active:
            raise ConfigurationError(
                f"key {key_id!r} is the active {key.algorithm} signer; rotate "
                f"first ('actionlinks keys rotate --alg {key.algorithm}')"
            )
        return KeyRing(tuple(k for k in self.keys if k.key_id != key_id))

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set: EdDSA and ES256 keys only, no private parts."""
        public = (key.to_public_jwk() for key in self.keys)
        return {"keys": [jwk for jwk in public if jwk is not None]}

    def public_keys(self) -> PublicKeySet:
        """The ring's EdDSA and ES256 keys as a verifier would hold them."""
        return PublicKeySet.from_jwks(self.jwks())

    def to_private_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWK Set with private parts, as the keys file stores it."""
        return {"keys": [key.to_private_jwk() for key in self.keys]}

    @classmethod
    def from_private_jwks(cls, document: object) -> KeyRing:
        """Load a ring from a JWK Set with private parts.

        Raises:
            KeyFileError: the document is not such a set.
        """
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise KeyFileError("the keys file must be a JWK Set: {'keys': [...]}")
        keys = []
        for jwk in document["keys"]:
            if not isinstance(jwk, dict):
                raise KeyFileError("every entry of 'keys' must be a JSON object")
            keys.append(SigningKey.from_jwk(jwk))
        try:
            return cls(tuple(keys))
        except ConfigurationError as exc:
            raise KeyFileError(str(exc)) from exc


class PublicKey:
    """A verify-only EdDSA or ES256 key from a public JWK (a JWKS entry).

    What a receiver of signed webhooks holds: it verifies, it never signs.
    """

    __slots__ = ("_public", "algorithm", "key_id")

    def __init__(
        self,
        key_id: str,
        *,
        algorithm: Algorithm,
        public: Ed25519PublicKey | ec.EllipticCurvePublicKey,
    ) -> None:
        """Wrap a public key; prefer :meth:`from_jwk`."""
        self.key_id = key_id
        self.algorithm = algorithm
        self._public = public

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        """Load a public JWK with ``kid`` and ``alg`` (``EdDSA`` or ``ES256``).

        Raises:
            ConfigurationError: not such a JWK.
        """
        key_id, algorithm = jwk.get("kid"), jwk.get("alg")
        if not isinstance(key_id, str) or not 0 < len(key_id) <= 64:
            raise ConfigurationError("a public key needs a 'kid' of 1-64 characters")
        if algorithm not in ("EdDSA", "ES256"):
            raise ConfigurationError(f"key {key_id!r}: 'alg' must be EdDSA or ES256")
        parsed = {k: v for k, v in jwk.items() if k not in ("d", "status", "created")}
        try:
            public = (_OKP if algorithm == "EdDSA" else _EC).from_jwk(parsed)
        except (InvalidKeyError, PyJWKError, ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError(f"key {key_id!r}: not a valid JWK") from exc
        if algorithm == "EdDSA" and isinstance(public, Ed25519PublicKey):
            return cls(key_id, algorithm="EdDSA", public=public)
        if (
            algorithm == "ES256"
            and isinstance(public, ec.EllipticCurvePublicKey)
            and isinstance(public.curve, ec.SECP256R1)
        ):
            return cls(key_id, algorithm="ES256", public=public)
        raise ConfigurationError(f"key {key_id!r}: not a public {algorithm} key")

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's signature of ``message``."""
        if isinstance(self._public, Ed25519PublicKey):
            return _OKP.verify(message, self._public, signature)
        return _EC.verify(message, self._public, signature)

    def __repr__(self) -> str:
        """Show kid and algorithm."""
        return f"PublicKey(key_id={self.key_id!r}, algorithm={self.algorithm!r})"


class PublicKeySet:
    """Public keys selected by ``kid``: a JWK Set as a verifier holds it.

    Args:
        keys: the keys.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[PublicKey]) -> None:
        """Index the keys by ``kid``."""
        self._keys = {key.key_id: key for key in keys}

    @classmethod
    def from_jwks(cls, document: object) -> PublicKeySet:
        """Load ``{"keys": [...]}`` (``GET /.well-known/jwks.json``).

        Entries of other algorithms (or without ``alg``) are skipped, as a JWK
        Set may carry keys for other uses.

        Raises:
            ConfigurationError: not a JWK Set, or a malformed EdDSA/ES256 key.
        """
        if not isinstance(document, Mapping) or not isinstance(
            document.get("keys"), list
        ):
            raise ConfigurationError("a JWK Set is {'keys': [...]}")
        return cls(
            PublicKey.from_jwk(jwk)
            for jwk in document["keys"]
            if isinstance(jwk, Mapping) and jwk.get("alg") in ("EdDSA", "ES256")
        )

    def get(self, key_id: str) -> PublicKey | None:
        """The key with ``key_id``, or ``None``."""
        return self._keys.get(key_id)

    def __len__(self) -> int:
        """The number of keys."""
        return len(self._keys)

    def __repr__(self) -> str:
        """Count the keys."""
        return f"PublicKeySet(keys={len(self._keys)})"
