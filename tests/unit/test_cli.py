"""The CLI in process (actionlinks.cli.run), for speed; the installed command
is exercised in tests/integration/test_cli.py."""

from __future__ import annotations

import json

import pytest

from actionlinks.cli import run


def cli(home, capsys, *argv, env=None):
    code = run(list(argv), {"ACTIONLINKS_HOME": str(home), **(env or {})})
    out, err = capsys.readouterr()
    return code, out, err


def test_mint_verify_and_revoke_round_trip(home, capsys):
    """mint prints a URL verify accepts; revoke --jti makes it rejected."""
    code, out, _ = cli(home, capsys, "mint", "invite", "--sub", "u", "--json")
    minted = json.loads(out)
    assert code == 0
    code, out, _ = cli(home, capsys, "verify", minted["url"])
    assert code == 0
    assert "invite for u" in out
    assert cli(home, capsys, "revoke", "--jti", minted["jti"])[0] == 0
    code, _, err = cli(home, capsys, "verify", minted["token"])
    assert code == 1
    assert err.startswith("actionlinks: rejected: the link was revoked")


def test_revoke_by_subject_and_action(home, capsys):
    """revoke --sub S --action A revokes that action's links only."""
    _, out, _ = cli(home, capsys, "mint", "invite", "--sub", "s", "--json")
    invite = json.loads(out)["url"]
    _, out, _ = cli(home, capsys, "mint", "email-confirm", "--sub", "s", "--json")
    confirm = json.loads(out)["url"]
    code, out, _ = cli(home, capsys, "revoke", "--sub", "s", "--action", "invite")
    assert code == 0
    assert "every invite link of s" in out
    assert cli(home, capsys, "verify", invite)[0] == 1
    assert cli(home, capsys, "verify", confirm)[0] == 0
    assert cli(home, capsys, "revoke", "--jti", "x", "--action", "invite")[0] == 2


def test_tokens_issue_and_revoke(home, capsys):
    """tokens issue prints an access token; --json gives jti, scope and expiry."""
    code, out, _ = cli(
        home, capsys, "tokens", "issue", "--scope", "links:read", "--json"
    )
    issued = json.loads(out)
    assert code == 0
    assert issued["scope"] == "links:read"
    assert issued["expires_at"].endswith("Z")
    code, out, _ = cli(
        home, capsys, "tokens", "issue", "--scope", "links:write", "--ttl", "1d"
    )
    assert out.count(".") == 2
    assert cli(home, capsys, "tokens", "revoke", issued["jti"])[0] == 0
    with pytest.raises(SystemExit) as caught:
        cli(home, capsys, "tokens", "issue", "--scope", "admin")
    assert caught.value.code == 2


def test_access_token_is_not_a_link(home, capsys):
    """verify refuses an API access token (another typ)."""
    _, out, _ = cli(home, capsys, "tokens", "issue", "--scope", "links:read")
    code, _, err = cli(home, capsys, "verify", out.strip())
    assert code == 1
    assert "another kind" in err or "unknown action" in err


def test_keys_list_rotate_retire_and_jwks(home, capsys):
    """keys list shows three signers; rotate adds one; retire removes the old."""
    code, out, _ = cli(home, capsys, "keys", "list")
    assert code == 0
    assert len(out.strip().splitlines()) == 3
    _, out, _ = cli(home, capsys, "keys", "list", "--json")
    old = next(row["kid"] for row in json.loads(out) if row["alg"] == "ES256")
    assert cli(home, capsys, "keys", "rotate", "--alg", "ES256")[0] == 0
    assert cli(home, capsys, "keys", "retire", old)[0] == 0
    _, out, _ = cli(home, capsys, "keys", "jwks")
    kids = {k["kid"] for k in json.loads(out)["keys"]}
    assert old not in kids
    assert len(kids) == 2


def test_state_fingerprint_that_nothing_could_check_is_refused(home, capsys):
    """Issue 6 item 12: mint --state for a service-mode action exits 2, one line.

    No TOML action can say how to read a subject's current state, so such a
    link could never be confirmed; before the fix it was minted and always 400.
    """
    code, out, err = cli(
        home, capsys, "mint", "password-reset", "--sub", "u", "--state", "h1"
    )
    assert (code, out) == (2, "")
    assert "current_state" in err
    assert err.count("\n") == 1


def test_configuration_errors_exit_2(home, capsys):
    """Unknown actions and too-long lifetimes are usage errors."""
    code, _, err = cli(home, capsys, "mint", "nope", "--sub", "u")
    assert code == 2
    assert "unknown action" in err
    code, _, err = cli(
        home, capsys, "mint", "magic-signin", "--sub", "u", "--ttl", "2h"
    )
    assert code == 2
    assert "ttl" in err


def test_unavailable_database_exits_3(home, capsys):
    """A database that cannot be opened is exit 3, not a traceback."""
    (home / "actionlinks.db").mkdir()
    code, _, err = cli(home, capsys, "mint", "invite", "--sub", "u")
    assert code == 3
    assert err.startswith("actionlinks: unavailable:")


def test_serve_refuses_bad_ports_before_starting(home, capsys):
    """serve checks its arguments before it binds anything."""
    code, _, err = cli(home, capsys, "serve", "--port", "0")
    assert code == 2
    assert "--port" in err
    assert cli(home, capsys, "serve", "--workers", "0")[0] == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["mint", "invite", "--sub", "\udcff"],
        ["mint", "invite", "--sub", "a\nb"],
        ["mint", "invite", "--sub", "u", "--state", "\udcff"],
        ["revoke", "--sub", "\udcff"],
        ["revoke", "--jti", "\udcff"],
        ["status", "\udcff"],
    ],
)
def test_undecodable_arguments_are_usage_errors(home, capsys, argv):
    """Bytes that are not UTF-8 (surrogate-escaped argv) are refused cleanly."""
    code, _, err = cli(home, capsys, *argv)
    assert code == 2
    assert "Traceback" not in err


def test_status_shows_a_links_life(home, capsys):
    """status JTI tells the state, the instants and the rejected attempts."""
    _, out, _ = cli(home, capsys, "mint", "invite", "--sub", "u", "--json")
    minted = json.loads(out)
    code, out, _ = cli(home, capsys, "status", minted["jti"])
    assert code == 0
    assert out.startswith("invite for u: issued")
    cli(home, capsys, "revoke", "--jti", minted["jti"])
    cli(home, capsys, "verify", minted["token"])
    _, out, _ = cli(home, capsys, "status", minted["jti"], "--json")
    document = json.loads(out)
    assert document["state"] == "revoked"
    assert [a["reason"] for a in document["rejected_attempts"]] == []
    code, _, err = cli(home, capsys, "status", "unknown-jti")
    assert code == 2
    assert "no link" in err


def test_migrate_creates_the_schema_and_says_so(home, capsys):
    """migrate opens the database, creating or updating its tables; it says
    which (a new user's trial: an empty database was called current)."""
    code, out, _ = cli(home, capsys, "migrate")
    assert code == 0
    assert out.startswith("created the database schema (version ")
    assert (home / "actionlinks.db").exists()
    code, out, _ = cli(home, capsys, "migrate")
    assert code == 0
    assert out.startswith("the database schema is current (version ")


def test_migrate_says_from_which_version_it_updated(home, capsys):
    """A file of the first schema (0.1.0 builds) is brought up to date."""
    import sqlite3

    from actionlinks.stores.sqlite import SCHEMA_STEPS

    with sqlite3.connect(home / "actionlinks.db") as connection:
        connection.executescript(SCHEMA_STEPS[0])
        connection.execute("PRAGMA user_version = 1")
    code, out, _ = cli(home, capsys, "migrate")
    assert code == 0
    assert out.startswith(
        f"updated the database schema from version 1 to {len(SCHEMA_STEPS)}: "
    )


def test_keys_rotate_activate_after_schedules_the_new_signer(home, capsys):
    """--activate-after 60s: the new key is listed with its time; links minted
    now still carry the old kid; a second schedule is refused (exit 2)."""
    _, before, _ = cli(home, capsys, "keys", "list", "--json")
    old = next(k["kid"] for k in json.loads(before) if k["alg"] == "HS256")
    code, out, _ = cli(
        home, capsys, "keys", "rotate", "--alg", "HS256", "--activate-after", "60s"
    )
    assert code == 0
    assert "verifies now and signs from" in out
    _, listed, _ = cli(home, capsys, "keys", "list")
    assert "signs from" in listed
    _, minted, _ = cli(home, capsys, "mint", "invite", "--sub", "u", "--json")
    assert json.loads(minted)["kid"] == old
    code, _, err = cli(
        home, capsys, "keys", "rotate", "--alg", "HS256", "--activate-after", "60s"
    )
    assert code == 2
    assert "scheduled already" in err
