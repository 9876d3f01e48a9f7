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


# --- issue 6: bounded input, private files, sub-second revocation -------------------


def one_line_exit_2(result):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("actionlinks: error:"), lines
    assert len([line for line in lines if "error" in line]) == 1
    return lines[-1]


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["mint", "invite", "--sub", "u", "--ttl", "999999999w"], {}),
        (["mint", "invite", "--sub", "u", "--data", "[" * 3000 + "]" * 3000], {}),
        (
            [
                "mint",
                "invite",
                "--sub",
                "u",
                "--data",
                '{"a":' * 3000 + "1" + "}" * 3000,
            ],
            {},
        ),
        (["mint", "invite", "--sub", "u"], {"ACTIONLINKS_BASE_URL": "http://["}),
        (
            ["mint", "invite", "--sub", "u"],
            {"ACTIONLINKS_WEBHOOK_RETRY_SCHEDULE": "0," + "9" * 30},
        ),
        (["mint", "invite", "--sub", "u"], {"ACTIONLINKS_LEEWAY": "thirty"}),
        (["mint", "invite", "--sub", "u"], {"ACTIONLINKS_LEEWAY": "\u00b2"}),
        (["tokens", "issue", "--scope", "links:read", "--ttl", "99999999999d"], {}),
    ],
)
def test_hostile_arguments_are_one_line_and_exit_2(home, args, env):
    """Item 8: overflows, deep nesting and broken URLs never print a traceback."""
    one_line_exit_2(run(home, *args, env=env))


def test_a_closed_pipe_ends_the_command_silently(home):
    """Item 8: `keys list --json | head -c1` prints one byte and no traceback."""
    command = f"{SCRIPT} keys list --json | head -c1"
    result = subprocess.run(
        ["/bin/bash", "-o", "pipefail", "-c", command],
        env={**os.environ, "ACTIONLINKS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == "["
    assert result.stderr == ""


def test_verify_json_reports_a_rejection_as_json(home):
    """Item 18: verify --json prints JSON on stdout for a rejected link, exit 1."""
    result = run(home, "verify", "not.a.token", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["error"] == "malformed"


def test_init_creates_a_private_config_and_warns_when_it_is_not(tmp_path):
    """Item 9: actionlinks.toml is 0600 under umask 022; a readable one warns."""
    result = subprocess.run(
        ["/bin/bash", "-c", f"umask 022 && {SCRIPT} init"],
        env={**os.environ, "ACTIONLINKS_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    config = tmp_path / "actionlinks.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    config.chmod(0o644)
    warned = run(tmp_path, "mint", "invite", "--sub", "u")
    assert warned.returncode == 0
    assert "actionlinks.toml is readable by others" in warned.stderr
    assert "chmod 600" in warned.stderr


def test_init_records_the_issuer_so_a_new_base_url_keeps_tokens_valid(tmp_path):
    """Item 16: changing the base URL later does not invalidate access tokens."""
    ok(run(tmp_path, "init", "--base-url", "https://old.example"))
    token = ok(run(tmp_path, "tokens", "issue", "--scope", "links:read")).strip()
    link = ok(run(tmp_path, "mint", "invite", "--sub", "u")).strip()
    moved = {"ACTIONLINKS_BASE_URL": "https://new.example"}
    assert ok(run(tmp_path, "mint", "invite", "--sub", "u", env=moved)).startswith(
        "https://new.example/a/"
    )
    ok(run(tmp_path, "verify", link, env=moved))
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload["iss"] == "https://old.example"


def test_revoke_then_mint_at_once_gives_a_live_link(home):
    """Item 1: revoke --sub S, then at once mint for S: the new link works."""
    ok(run(home, "revoke", "--sub", "user:7"))
    url = ok(run(home, "mint", "invite", "--sub", "user:7")).strip()
    assert "valid: invite for user:7" in ok(run(home, "verify", url))


def test_mint_then_revoke_at_once_kills_the_link(home):
    """Item 1, the other order: a link minted just before the revocation dies."""
    url = ok(run(home, "mint", "invite", "--sub", "user:8")).strip()
    ok(run(home, "revoke", "--sub", "user:8"))
    assert "revoked" in rejected(run(home, "verify", url))


def test_status_says_when_an_action_does_nothing(home):
    """Item 15: status notes that a built-in action has no handler."""
    minted = json.loads(ok(run(home, "mint", "invite", "--sub", "u", "--json")))
    out = ok(run(home, "status", minted["jti"]))
    assert "invite has no handler, handler_url or redirect" in out
    report = json.loads(ok(run(home, "status", minted["jti"], "--json")))
    assert report["dispatch"] is None


def test_init_base_url_never_rewrites_an_existing_home(home):
    """init --base-url on an existing home says where to set it (exit 2)."""
    line = rejected(run(home, "init", "--base-url", "https://new.example"), code=2)
    assert "set base_url there" in line
    assert rejected(run(home, "init", "--base-url", "http://x/ y"), code=2)


def test_relative_sqlite_paths_live_in_the_home(home, tmp_path_factory):
    """sqlite:///name.db is relative to ACTIONLINKS_HOME, wherever the CLI runs."""
    elsewhere = tmp_path_factory.mktemp("cwd")
    result = subprocess.run(
        [str(SCRIPT), "mint", "invite", "--sub", "u"],
        cwd=elsewhere,
        env={
            **os.environ,
            "ACTIONLINKS_HOME": str(home),
            "ACTIONLINKS_DATABASE_URL": "sqlite:///other.db",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (home / "other.db").exists()
    assert not (elsewhere / "other.db").exists()


def test_revoking_an_unknown_id_says_so(home):
    """revoke --jti of an id never minted here revokes it and says it is unknown."""
    assert "no link with this id is recorded here" in ok(
        run(home, "revoke", "--jti", "nosuch")
    )


def test_an_access_token_given_to_verify_is_of_another_kind(home):
    """verify names the kind mismatch, not an unknown action."""
    token = ok(run(home, "tokens", "issue", "--scope", "links:read")).strip()
    assert "another kind" in rejected(run(home, "verify", token))


@pytest.mark.parametrize("jti", ["", "x" * 100_000, "\udcff"])
def test_tokens_revoke_checks_the_id(home, jti):
    """Audit: an empty, huge or undecodable id is one line and exit 2."""
    arg = jti.encode("utf-8", "surrogateescape") if jti == "\udcff" else jti
    result = subprocess.run(
        [
            str(SCRIPT).encode(),
            b"tokens",
            b"revoke",
            arg if isinstance(arg, bytes) else arg.encode(),
        ],
        env={**os.environ, "ACTIONLINKS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    one_line_exit_2(result)


def test_an_unwritable_stdout_is_one_line_not_a_traceback(home):
    """Audit: `mint … > /dev/full` says it could not write, exit 2."""
    command = f"{SCRIPT} mint invite --sub u > /dev/full"
    result = subprocess.run(
        ["/bin/bash", "-c", command],
        env={**os.environ, "ACTIONLINKS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("actionlinks: error: cannot write the output")
    assert "Traceback" not in result.stderr
