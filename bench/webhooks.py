"""Standard Webhooks sign and verify: actionlinks against the references and the floor.

One run, printed as a Markdown table of microseconds per operation and the ratio
to the hand-written stdlib floor (pre-keyed hmac + base64: sign the exact bytes;
verify reads the three headers, checks the timestamp within 5 minutes and
compares the signature). The peers are the ``standardwebhooks`` and ``svix``
libraries. Run with ``.venv/bin/python bench/webhooks.py`` after
``.venv/bin/pip install '.[test]'``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
import timeit
from collections.abc import Callable

import svix
from standardwebhooks import Webhook

from actionlinks.clock import SystemClock
from actionlinks.webhooks import WebhookVerifier, generate_secret, secret_bytes
from actionlinks.webhooks.signing import V1Key

SECRET = generate_secret()
KEY = secret_bytes(SECRET)
NOW = SystemClock().now()
STAMP = int(NOW.timestamp())
BODY = json.dumps(
    {"type": "link.used", "timestamp": "2026-12-02T08:00:00Z", "data": {"sub": "ada"}},
    separators=(",", ":"),
).encode()
MESSAGE_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"


class Floor:
    """The stdlib floor: a careful hand-written Standard Webhooks v1."""

    def __init__(self, key: bytes) -> None:
        self.mac = hmac.new(key, digestmod=hashlib.sha256)

    def sign(self, message_id: str, timestamp: int, body: bytes) -> str:
        mac = self.mac.copy()
        mac.update(f"{message_id}.{timestamp}.".encode() + body)
        return "v1," + base64.b64encode(mac.digest()).decode()

    def verify(self, headers: dict[str, str], body: bytes) -> None:
        message_id = headers["webhook-id"]
        timestamp = int(headers["webhook-timestamp"])
        if abs(time.time() - timestamp) > 300:  # noqa: TID251 - the floor's own clock
            raise ValueError("timestamp")
        expected = self.sign(message_id, timestamp, body)
        for entry in headers["webhook-signature"].split(" "):
            if hmac.compare_digest(entry, expected):
                return
        raise ValueError("signature")


def best_of(operation: Callable[[], object], number: int) -> float:
    """Microseconds per call, best of three runs."""
    return min(timeit.repeat(operation, number=number, repeat=3)) / number * 1e6


def measure() -> list[tuple[str, str, float]]:
    """(operation, implementation, µs per operation) for every implementation."""
    floor = Floor(KEY)
    reference, svix_hook = Webhook(SECRET), svix.Webhook(SECRET)
    verifier = WebhookVerifier(secrets=SECRET)
    key = V1Key(KEY)  # what an endpoint holds: the key made ready once
    headers = {
        "webhook-id": MESSAGE_ID,
        "webhook-timestamp": str(STAMP),
        "webhook-signature": floor.sign(MESSAGE_ID, STAMP, BODY),
    }
    text = BODY.decode()
    number = 20_000
    rows = [
        ("sign", "stdlib floor", lambda: floor.sign(MESSAGE_ID, STAMP, BODY)),
        (
            "sign",
            "actionlinks",
            lambda: key.sign(message_id=MESSAGE_ID, timestamp=STAMP, body=BODY),
        ),
        ("sign", "standardwebhooks", lambda: reference.sign(MESSAGE_ID, NOW, text)),
        ("sign", "svix", lambda: svix_hook.sign(MESSAGE_ID, NOW, text)),
        ("verify", "stdlib floor", lambda: floor.verify(headers, BODY)),
        ("verify", "actionlinks", lambda: verifier.verify(headers, BODY)),
        (
            "verify",
            "standardwebhooks",
            lambda: reference.verify(BODY, headers, json_parse=False),
        ),
        ("verify", "svix", lambda: svix_hook.verify(BODY, headers)),
    ]
    return [(op, name, best_of(fn, number)) for op, name, fn in rows]


def main() -> None:
    timings = measure()
    floors = {op: us for op, name, us in timings if name == "stdlib floor"}
    print(f"Python {sys.version.split()[0]}; one run, best of 3\n")
    print("| operation | implementation | µs/op | × floor |")
    print("|---|---|---:|---:|")
    for op, name, us in timings:
        print(f"| {op} | {name} | {us:.2f} | {us / floors[op]:.2f}× |")


if __name__ == "__main__":
    main()
