"""Helpers for tests: forging tokens with chosen headers, payloads and keys."""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Any

# The example of the Standard Webhooks specification.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


if TYPE_CHECKING:
    from actionlinks.keys import SigningKey


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(value: dict[str, Any] | list[Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return b64(raw)


def forge(
    header: dict[str, Any] | bytes,
    payload: dict[str, Any] | list[Any] | bytes,
    key: SigningKey | None,
) -> str:
    """A compact JWS with exactly these parts, signed by ``key`` (or unsigned)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    signature = b"" if key is None else key.sign(signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(payload))


def rejection_cases(token: str, ring_key: SigningKey) -> dict[str, str]:
    """Hostile variants of ``token`` (signed with ``ring_key`` where that matters)."""
    link_token = token
    header, payload = parts(token)
    huge = "A" * (8 * 1024)
    return {
        "tampered": link_token[:-4]
        + ("AAAA" if not link_token.endswith("AAAA") else "BBBB"),
        "alg-none": forge({**header, "alg": "none"}, payload, None),
        "padding": link_token + "=",
        "plus-slash": link_token.replace("-", "+").replace("_", "/") + "+",
        "unknown-kid": forge({**header, "kid": "nope"}, payload, ring_key),
        "access-typ": forge({**header, "typ": "al-access+jwt"}, payload, ring_key),
        "undeclared-action": forge(header, {**payload, "pur": "launch"}, ring_key),
        "other-issuer": forge(header, {**payload, "iss": "https://x.test"}, ring_key),
        "exp-string": forge(header, {**payload, "exp": str(payload["exp"])}, ring_key),
        "exp-float": forge(header, {**payload, "exp": payload["exp"] + 0.5}, ring_key),
        "array": forge(header, [1, 2], ring_key),
        "crit": forge({**header, "crit": ["x"]}, payload, ring_key),
        "jwk": forge({**header, "jwk": {"kty": "oct"}}, payload, ring_key),
        "big": link_token + huge,
        "non-ascii": "%C3%A9%FF." + b64(b"x") + ".x",
        "empty-ish": "...",
    }


_COMPACT_JWS = re.compile(r"eyJ[A-Za-z0-9_-]*\.eyJ[A-Za-z0-9_-]*\.")


def shows_a_token(text: str) -> bool:
    """Whether ``text`` holds a compact JWS (a JSON header and payload, dotted).

    Not merely ``eyJ``: random ids (``msg_eyJ66k…``) contain it now and then.
    """
    return _COMPACT_JWS.search(text) is not None


def expired_of(link: Any) -> Any:
    """The :class:`~actionlinks.registry.ExpiredLink` a renewal of ``link`` asks."""
    from actionlinks.registry import ExpiredLink

    claims = link.claims
    return ExpiredLink(
        action=claims.action,
        subject=claims.subject,
        token_id=claims.token_id,
        issued_at=claims.issued_at,
        expired_at=claims.expires_at,
        data=claims.data,
    )
