"""Mint and verify cost per operation: actionlinks against peers and the stdlib floor.

One run, printed as a Markdown table of microseconds per operation and the ratio
to the hand-written stdlib floor (pre-keyed hmac + base64 + json, producing the
same bytes as PyJWT and checking signature, exp and audience). Run with
``python bench/tokens.py`` after ``pip install '.[bench]'``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sys
import timeit
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt

from actionlinks.clock import SystemClock
from actionlinks.keys import KeyRing
from actionlinks.tokens import Purpose, TokenIssuer

SECRET = secrets.token_bytes(32)
NOW = datetime.now(UTC)  # noqa: TID251 - a benchmark needs real time for peers
ISSUER = "https://links.example.test"
AUDIENCE = "password-reset"
PURPOSE = Purpose(
    name="password-reset", ttl=timedelta(minutes=30), max_ttl=timedelta(hours=2)
)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


class Floor:
    """The stdlib floor: what a careful hand-written HS256 JWT costs."""

    def __init__(self, secret: bytes) -> None:
        self.mac = hmac.new(secret, digestmod=hashlib.sha256)
        self.header = _b64(b'{"alg":"HS256","typ":"JWT"}')

    def mint(self, subject: str, now: int) -> str:
        payload = {
            "sub": subject,
            "aud": AUDIENCE,
            "jti": secrets.token_urlsafe(16),
            "iat": now,
            "exp": now + 1800,
        }
        signing_input = (
            self.header
            + b"."
            + _b64(json.dumps(payload, separators=(",", ":")).encode())
        )
        mac = self.mac.copy()
        mac.update(signing_input)
        return (signing_input + b"." + _b64(mac.digest())).decode()

    def verify(self, token: str, now: int) -> dict:
        signing_input, _, signature = token.rpartition(".")
        mac = self.mac.copy()
        mac.update(signing_input.encode())
        if not hmac.compare_digest(_b64(mac.digest()).decode(), signature):
            raise ValueError("signature")
        payload_segment = signing_input.partition(".")[2]
        claims = json.loads(
            base64.urlsafe_b64decode(
                payload_segment + "=" * (-len(payload_segment) % 4)
            )
        )
        if claims["exp"] <= now or claims["aud"] != AUDIENCE:
            raise ValueError("claims")
        return claims


def per_op(fn: Callable[[], object], budget: float = 0.4) -> float:
    timer = timeit.Timer(fn)
    number, elapsed = timer.autorange()
    number = max(1, int(number * budget / max(elapsed, 1e-9)))
    best = min(timer.repeat(repeat=3, number=number))
    return best / number * 1e6


def measure() -> list[tuple[str, str, float]]:
    """(operation, implementation, µs per operation) for every implementation."""
    now = int(NOW.timestamp())
    floor = Floor(SECRET)
    rows: list[tuple[str, str, float]] = []

    floor_token = floor.mint("user:42", now)
    pyjwt_token = jwt.encode(
        json.loads(base64.urlsafe_b64decode(floor_token.split(".")[1] + "==")),
        SECRET,
        algorithm="HS256",
    )
    if pyjwt_token != floor_token:
        sys.exit("the floor's token differs from PyJWT's; fix the floor first")
    rows.append(("mint", "stdlib floor", per_op(lambda: floor.mint("user:42", now))))
    rows.append(
        ("verify", "stdlib floor", per_op(lambda: floor.verify(floor_token, now)))
    )

    ring = KeyRing.generate(created_at=NOW)
    issuer = TokenIssuer(ring, issuer=ISSUER, clock=SystemClock())
    for algorithm in ("HS256", "EdDSA", "ES256"):
        token = issuer.mint(PURPOSE, subject="user:42", algorithm=algorithm).token
        label = f"actionlinks {algorithm}"
        rows.append(
            (
                "mint",
                label,
                per_op(
                    lambda a=algorithm: issuer.mint(
                        PURPOSE, subject="user:42", algorithm=a
                    )
                ),
            )
        )
        rows.append(
            ("verify", label, per_op(lambda t=token: issuer.verify(t, PURPOSE)))
        )

    payload = {"sub": "user:42", "aud": AUDIENCE, "iat": now, "exp": now + 1800}
    rows.append(
        (
            "mint",
            "PyJWT HS256",
            per_op(
                lambda: jwt.encode(
                    {**payload, "jti": secrets.token_urlsafe(16)},
                    SECRET,
                    algorithm="HS256",
                )
            ),
        )
    )
    rows.append(
        (
            "verify",
            "PyJWT HS256",
            per_op(
                lambda: jwt.decode(
                    pyjwt_token, SECRET, algorithms=["HS256"], audience=AUDIENCE
                )
            ),
        )
    )

    try:
        import itsdangerous
    except ImportError:
        print("itsdangerous not installed; skipped", file=sys.stderr)
    else:
        serializer = itsdangerous.URLSafeTimedSerializer(SECRET, salt=AUDIENCE)
        signed = serializer.dumps({"sub": "user:42"})
        rows.append(
            (
                "mint",
                "itsdangerous",
                per_op(lambda: serializer.dumps({"sub": "user:42"})),
            )
        )
        rows.append(
            (
                "verify",
                "itsdangerous",
                per_op(lambda: serializer.loads(signed, max_age=1800)),
            )
        )

    django = _django_generator()
    if django is not None:
        generator, user = django
        django_token = generator.make_token(user)
        rows.append(
            (
                "mint",
                "Django PasswordResetTokenGenerator",
                per_op(lambda: generator.make_token(user)),
            )
        )
        rows.append(
            (
                "verify",
                "Django PasswordResetTokenGenerator",
                per_op(lambda: generator.check_token(user, django_token)),
            )
        )

    return rows


def main() -> None:
    rows = measure()
    floors = {op: us for op, name, us in rows if name == "stdlib floor"}
    print(
        f"Python {sys.version.split()[0]}, PyJWT {jwt.__version__}; "
        "one run, best of 3\n"
    )
    print("| operation | implementation | µs/op | × floor |")
    print("|---|---|---:|---:|")
    for op, name, us in rows:
        print(f"| {op} | {name} | {us:.2f} | {us / floors[op]:.2f}× |")


def _django_generator():
    try:
        import django
        from django.conf import settings
    except ImportError:
        print("Django not installed; skipped", file=sys.stderr)
        return None
    settings.configure(
        SECRET_KEY=SECRET.hex(), PASSWORD_RESET_TIMEOUT=1800, USE_TZ=True
    )
    django.setup()
    from django.contrib.auth.tokens import PasswordResetTokenGenerator

    class User:
        pk = 42
        password = "pbkdf2_sha256$600000$salt$hash"
        last_login = None
        email = "user@example.test"

        @classmethod
        def get_email_field_name(cls) -> str:
            return "email"

    return PasswordResetTokenGenerator(), User()


if __name__ == "__main__":
    main()
