"""The installed ``actionlinks`` command, run as a real process."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).with_name("actionlinks")


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("ACTIONLINKS_")
    }
    environment.update(ACTIONLINKS_HOME=str(home), **(env or {}))
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


@pytest.fixture
def home(tmp_path):
    result = run(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    return tmp_path


def ok(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def rejected(result, code=1):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    return lines[-1]


def test_console_script_is_installed():
    """`pip install` put an `actionlinks` command beside the interpreter."""
    assert SCRIPT.exists()


def test_init_creates_config_and_keys_and_a_second_run_changes_nothing(tmp_path):
    """init writes actionlinks.toml and a 0600 keys file; a rerun says so, unchanged."""
    first = ok(run(tmp_path, "init"))
    assert "created" in first
    keys = tmp_path / "keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    second = ok(run(tmp_path, "init"))
    assert "nothing changed" in second
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_minted_link_verifies(home):
    """`mint password-reset --sub user:42` prints a link `verify` accepts."""
    url = ok(run(home, "mint", "password-reset", "--sub", "user:42")).strip()
    assert url.startswith("http://127.0.0.1:8000/a/")
    out = ok(run(home, "verify", url))
    assert "password-reset" in out
    assert "user:42" in out
    token = url.rsplit("/", 1)[1]
    ok(run(home, "verify", token, "--action", "password-reset"))


def test_mint_and_verify_json_carry_the_documented_fields(home):
    """--json gives url, token, jti, expires_at (ISO 8601 UTC) and the claims."""
    minted = json.loads(
        ok(
            run(
                home,
                "mint",
                "invite",
                "--sub",
                "a@example.test",
                "--ttl",
                "2h",
                "--data",
                '{"team": 7}',
                "--json",
            )
        )
    )
    assert {"url", "token", "jti", "expires_at"} <= set(minted)
    assert minted["expires_at"].endswith("Z")
    verified = json.loads(ok(run(home, "verify", minted["url"], "--json")))
    assert verified["action"] == "invite"
    assert verified["sub"] == "a@example.test"
    assert verified["jti"] == minted["jti"]
    assert verified["expires_at"] == minted["expires_at"]
    assert verified["data"] == {"team": 7}


def test_base_url_comes_from_the_environment(home):
    """ACTIONLINKS_BASE_URL decides every link's origin."""
    url = ok(
        run(
            home,
            "mint",
            "invite",
            "--sub",
            "u",
            env={"ACTIONLINKS_BASE_URL": "https://app.example.test/links"},
        )
    )
    assert url.startswith("https://app.example.test/links/a/")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-3] + ("abc" if t[-3:] != "abc" else "abd"),
        lambda t: t + "==",
        lambda t: "not-a-token",
        lambda t: "\u00e9" * 50,
    ],
)
def test_rejected_token_exits_1_with_one_line(home, mangle):
    """A bad token: exit 1, one line on stderr, no traceback, no token echoed."""
    token = ok(run(home, "mint", "invite", "--sub", "u")).strip().rsplit("/", 1)[1]
    bad = mangle(token)
    result = run(home, "verify", bad)
    line = rejected(result)
    assert line.startswith("actionlinks: rejected:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert token.split(".")[1] not in result.stderr


def test_token_for_another_action_is_rejected(home):
    """verify --action refuses a token of another action."""
    url = ok(run(home, "mint", "invite", "--sub", "u")).strip()
    assert "another action" in rejected(
        run(home, "verify", url, "--action", "email-confirm")
    )


@pytest.mark.parametrize(
    "args",
    [
        ["mint"],
        ["mint", "invite"],
        ["mint", "invite", "--sub", "u", "--ttl", "soon"],
        ["mint", "invite", "--sub", "u", "--data", "[1]"],
        ["mint", "invite", "--sub", "u", "--data", "{"],
        ["mint", "invite", "--sub", "u", "--alg", "RS256"],
        ["mint", "invite", "--sub", "u", "--ttl", "400d"],
        ["mint", "no-such-action", "--sub", "u"],
        ["verify"],
        ["keys", "retire", "nope"],
        ["frobnicate"],
    ],
)
def test_usage_errors_exit_2_without_a_traceback(home, args):
    """Bad arguments exit 2 with a message, never a traceback."""
    result = run(home, *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "error" in result.stderr


def test_commands_before_init_say_to_run_init(tmp_path):
    """Without keys, mint explains what to do (exit 2)."""
    line = rejected(run(tmp_path, "mint", "invite", "--sub", "u"), code=2)
    assert "actionlinks init" in line


def test_rotation_keeps_old_links_and_retirement_ends_them(home):
    """After `keys rotate` old links verify; after `keys retire` they do not."""
    old = json.loads(ok(run(home, "mint", "invite", "--sub", "u", "--json")))
    out = ok(run(home, "keys", "rotate", "--alg", "HS256"))
    assert "new HS256 signing key" in out
    ok(run(home, "verify", old["url"]))
    new = json.loads(ok(run(home, "mint", "invite", "--sub", "u", "--json")))
    assert new["kid"] != old["kid"]
    listing = json.loads(ok(run(home, "keys", "list", "--json")))
    status = {row["kid"]: row["status"] for row in listing}
    assert status[old["kid"]] == "retiring"
    assert status[new["kid"]] == "active"
    ok(run(home, "keys", "retire", old["kid"]))
    assert rejected(run(home, "verify", old["url"])).startswith("actionlinks: rejected")
    ok(run(home, "verify", new["url"]))
    assert stat.S_IMODE((home / "keys.json").stat().st_mode) == 0o600


def test_retiring_the_active_key_is_refused(home):
    """The signing key of an algorithm cannot be retired before a rotation."""
    listing = json.loads(ok(run(home, "keys", "list", "--json")))
    active = next(r["kid"] for r in listing if r["alg"] == "HS256")
    assert "rotate first" in rejected(run(home, "keys", "retire", active), code=2)


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"])
def test_jwks_lets_stock_pyjwt_verify_cli_tokens(home, alg):
    """`keys jwks` publishes public keys that verify minted tokens in PyJWT."""
    minted = json.loads(
        ok(run(home, "mint", "invite", "--sub", "u", "--alg", alg, "--json"))
    )
    jwks = json.loads(ok(run(home, "keys", "jwks")))
    assert all("d" not in k and "k" not in k for k in jwks["keys"])
    key = next(
        k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == minted["kid"]
    )
    claims = jwt.decode(
        minted["token"], key=key, algorithms=[alg], options={"verify_iat": False}
    )
    assert claims["jti"] == minted["jti"]


def test_revoked_link_is_rejected_by_verify(home):
    """`revoke --jti` and `revoke --sub` make verify reject the links."""
    first = json.loads(ok(run(home, "mint", "invite", "--sub", "u", "--json")))
    ok(run(home, "revoke", "--jti", first["jti"]))
    assert "revoked" in rejected(run(home, "verify", first["url"]))
    second = json.loads(ok(run(home, "mint", "email-confirm", "--sub", "v", "--json")))
    ok(run(home, "revoke", "--sub", "v"))
    assert "revoked" in rejected(run(home, "verify", second["url"]))


def test_state_bound_link_that_serve_could_never_confirm_is_refused(home):
    """Issue 6 item 12: --state for an action nothing can check: exit 2, one line."""
    line = rejected(
        run(home, "mint", "password-reset", "--sub", "u", "--state", "hash-1"),
        code=2,
    )
    assert "current_state" in line


def test_broken_config_file_is_a_clean_error(home):
    """A malformed actionlinks.toml gives exit 2 and names the file."""
    (home / "actionlinks.toml").write_text("base_url = [unterminated")
    assert "actionlinks.toml" in rejected(
        run(home, "mint", "invite", "--sub", "u"), code=2
    )


def test_unknown_environment_setting_is_refused(home):
    """A misspelt ACTIONLINKS_ variable is named, with the nearest (issue 6, 18)."""
    line = rejected(
        run(home, "mint", "invite", "--sub", "u", env={"ACTIONLINKS_BASEURL": "x"}),
        code=2,
    )
    assert "ACTIONLINKS_BASEURL" in line
    assert "did you mean ACTIONLINKS_BASE_URL?" in line


def test_secrets_never_reach_the_output(home):
    """No command prints the private key material."""
    secrets = [
        k.get("k") or k["d"]
        for k in json.loads((home / "keys.json").read_text())["keys"]
    ]
    outputs = [
        run(home, "keys", "list"),
        run(home, "keys", "jwks"),
        run(home, "mint", "invite", "--sub", "u", "--json"),
        run(home, "verify", "garbage"),
    ]
    for result in outputs:
        for secret in secrets:
            assert secret not in result.stdout + result.stderr
