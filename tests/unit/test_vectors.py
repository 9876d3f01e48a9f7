"""Public test vectors (tests/vectors, copied with their README) for the HS256 key:
Wycheproof HMAC-SHA256, RFC 7515 A.1 and the JOSE cookbook (RFC 7520) example."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from actionlinks.errors import ConfigurationError
from actionlinks.keys import SigningKey

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _wycheproof_hmac_cases():
    document = json.loads(
        (VECTORS / "wycheproof" / "hmac_sha256_test.json").read_text()
    )
    return [
        pytest.param(case, id=f"tc{case['tcId']}")
        for group in document["testGroups"]
        if group["tagSize"] == 256  # full-length tags: what HS256 uses
        for case in group["tests"]
    ]


@pytest.mark.parametrize("case", _wycheproof_hmac_cases())
def test_wycheproof_hmac_sha256(case):
    """Valid tags verify, invalid ones do not; keys under 32 bytes are refused."""
    key = bytes.fromhex(case["key"])
    message, tag = bytes.fromhex(case["msg"]), bytes.fromhex(case["tag"])
    if len(key) < 32:
        with pytest.raises(ConfigurationError):
            SigningKey.from_secret(key, key_id="w", created_at=NOW)
        return
    signing_key = SigningKey.from_secret(key, key_id="w", created_at=NOW)
    assert signing_key.verify(message, tag) is (case["result"] == "valid")
    if case["result"] == "valid":
        assert signing_key.sign(message) == tag


def test_rfc7515_appendix_a1_hs256():
    """RFC 7515 A.1: the HS256 example signature, byte for byte."""
    jwk_k = (
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4h"
        "cgUuTwjAzZr1Z9CAow"
    )
    header = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    payload = (
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl"
        "LmNvbS9pc19yb290Ijp0cnVlfQ"
    )
    signature = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    key = SigningKey.from_secret(_b64url(jwk_k), key_id="a1", created_at=NOW)
    message = f"{header}.{payload}".encode()
    assert key.sign(message) == _b64url(signature)
    assert key.verify(message, _b64url(signature))
    assert not key.verify(message + b"x", _b64url(signature))


def test_jose_cookbook_hs256_integrity_protection():
    """RFC 7520 4.4: the cookbook's HS256 JWS verifies with its oct key."""
    example = json.loads(
        (
            VECTORS
            / "jose-cookbook"
            / "jws"
            / "4_4.hmac-sha2_integrity_protection.json"
        ).read_text()
    )
    jwk = dict(example["input"]["key"])
    key = SigningKey.from_jwk(jwk)
    compact = example["output"]["compact"]
    signing_input, _, signature = compact.rpartition(".")
    assert key.verify(signing_input.encode(), _b64url(signature))
    assert key.sign(signing_input.encode()) == _b64url(signature)
