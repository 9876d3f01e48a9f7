"""The mail CLI in process: send, show, list and resend as text and JSON."""

from __future__ import annotations

import json

import pytest

from actionlinks.cli import run

SMTP = {"ACTIONLINKS_SMTP_FROM": "Acme <links@acme.test>"}


def cli(home, capsys, *argv):
    code = run(list(argv), {"ACTIONLINKS_HOME": str(home), **SMTP})
    out, err = capsys.readouterr()
    return code, out, err


def test_mail_commands_speak_text_and_the_apis_json(home, capsys):
    """send --json is the API's answer; list and resend have JSON too; the
    link is never printed."""
    code, out, err = cli(
        home,
        capsys,
        "mail",
        "send",
        "invite",
        "--to",
        "a@example.org",
        "--sub",
        "u1",
        "--json",
    )
    assert code == 0
    assert err == ""  # smtp_from is set: no note
    sent = json.loads(out)
    assert sent["state"] == "pending"
    assert "/a/" not in out
    code, out, _ = cli(home, capsys, "mail", "list", "--json")
    assert [m["id"] for m in json.loads(out)] == [sent["id"]]
    code, out, _ = cli(home, capsys, "mail", "list", "--state", "pending")
    assert f"{sent['id']}  invite  a@example.org  pending" in out
    code, out, _ = cli(home, capsys, "mail", "resend", sent["id"], "--json")
    assert code == 0
    assert json.loads(out)["id"] == sent["id"]
    code, out, _ = cli(home, capsys, "mail", "show", sent["id"])
    assert "to a@example.org: pending, 0 attempts" in out


@pytest.mark.parametrize("limit", ["0", "101", "x", "٣"])
def test_a_bad_limit_is_a_usage_error(home, capsys, limit):
    with pytest.raises(SystemExit) as exited:
        cli(home, capsys, "mail", "list", "--limit", limit)
    assert exited.value.code == 2
    assert "from 1 to 100" in capsys.readouterr().err
