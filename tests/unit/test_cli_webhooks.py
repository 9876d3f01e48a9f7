"""`actionlinks webhooks …` in process: endpoints, sending, listing, errors."""

from __future__ import annotations

import json

import pytest

from actionlinks.cli import run

LOCAL = {"ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1"}


def cli(home, capsys, *argv):
    code = run(list(argv), {"ACTIONLINKS_HOME": str(home), **LOCAL})
    out, err = capsys.readouterr()
    return code, out, err


def add(home, capsys, *extra):
    code, out, _ = cli(
        home,
        capsys,
        "webhooks",
        "endpoints",
        "add",
        "http://127.0.0.1:9/h",
        "--json",
        *extra,
    )
    assert code == 0
    return json.loads(out)


def test_endpoints_are_added_listed_rotated_disabled_and_enabled(home, capsys):
    """Each endpoint command prints the endpoint; secrets only when made."""
    code, out, _ = cli(home, capsys, "webhooks", "endpoints")
    assert (code, out.strip()) == (
        0,
        "no endpoints; add one with: actionlinks webhooks endpoints add URL",
    )
    code, out, _ = cli(
        home,
        capsys,
        "webhooks",
        "endpoints",
        "add",
        "http://127.0.0.1:9/h",
        "--event-type",
        "order.paid",
        "--no-jwt",
    )
    assert code == 0
    endpoint_id = out.split()[0]
    secret = out.split("secret: ")[1].split()[0]
    assert "[order.paid]" in out
    code, out, _ = cli(home, capsys, "webhooks", "endpoints", "list", "--json")
    [listed] = json.loads(out)
    assert listed["jwt_header"] is None
    assert secret not in out
    code, out, _ = cli(home, capsys, "webhooks", "endpoints", "rotate", endpoint_id)
    assert "secret: whsec_" in out
    assert secret not in out
    code, out, _ = cli(home, capsys, "webhooks", "endpoints", "disable", endpoint_id)
    assert "DISABLED (deleted)" in out
    code, out, _ = cli(
        home, capsys, "webhooks", "endpoints", "enable", endpoint_id, "--json"
    )
    assert json.loads(out)["state"] == "enabled"


def test_send_attempts_messages_and_redeliver(home, capsys):
    """A message is stored (not sent by a one-shot command) and shown."""
    endpoint = add(home, capsys)
    code, out, _ = cli(
        home,
        capsys,
        "webhooks",
        "send",
        "order.paid",
        "--payload",
        '{"order": 7}',
        "--endpoint",
        endpoint["id"],
        "--id",
        "order-7",
    )
    assert code == 0
    assert out.startswith("order-7 order.paid: pending")
    assert f"to {endpoint['id']}: pending, 0 attempts, next attempt" in out
    code, out, _ = cli(home, capsys, "webhooks", "attempts", "order-7", "--json")
    shown = json.loads(out)
    assert shown["payload"] == {"order": 7}
    assert shown["deliveries"][0]["history"] == []
    code, out, _ = cli(home, capsys, "webhooks", "messages")
    assert out.startswith("order-7  order.paid  pending")
    code, out, _ = cli(home, capsys, "webhooks", "messages", "--state", "failed")
    assert out.strip() == "no messages in state failed"
    code, out, _ = cli(home, capsys, "webhooks", "messages", "--json", "--limit", "1")
    assert [m["id"] for m in json.loads(out)] == ["order-7"]
    code, out, _ = cli(home, capsys, "webhooks", "redeliver", "order-7")
    assert code == 0
    assert "pending" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["webhooks", "attempts", "msg_nope"], "no message with this id"),
        (["webhooks", "redeliver", "msg_nope"], "no message with this id"),
        (["webhooks", "endpoints", "rotate", "ep_nope"], "no endpoint with this id"),
        (
            ["webhooks", "send", "a b"],
            "an event type is 1-100 letters, digits and _.:- (like 'user.created')",
        ),
        (
            ["webhooks", "endpoints", "add", "http://example.com/h"],
            (
                "a webhook URL must be https:// (plain http only to localhost): "
                "webhooks carry what people typed"
            ),
        ),
        (
            ["webhooks", "send", "a", "--endpoint", "ep_nope"],
            "no endpoint with this id",
        ),
        # What a shell passes for bytes that are not UTF-8 (surrogateescape).
        (
            ["webhooks", "endpoints", "disable", "\udced\udca0\udc80"],
            "no endpoint with this id",
        ),
        (["webhooks", "attempts", "\udcff"], "no message with this id"),
        (
            ["webhooks", "send", "a", "--payload", '{"x": "\udcff"}'],
            "'payload' must be JSON text: no NaN, no lone surrogates",
        ),
        (
            ["webhooks", "send", "a", "--payload", '{"x": NaN}'],
            "'payload' must be JSON text: no NaN, no lone surrogates",
        ),
        (
            ["webhooks", "endpoints", "add", "https://ex\udcffample.com/"],
            "a webhook URL is not a valid URL",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(home, capsys, argv, message):
    """Unknown ids and invalid input: one line on stderr, exit 2."""
    code, out, err = cli(home, capsys, *argv)
    assert (code, out) == (2, "")
    assert err == f"actionlinks: error: {message}\n"


def test_a_payload_that_is_not_an_object_is_a_usage_error(home, capsys):
    """--payload must be a JSON object."""
    with pytest.raises(SystemExit) as exited:
        cli(home, capsys, "webhooks", "send", "a", "--payload", "[1]")
    assert exited.value.code == 2
    assert "must be a JSON object" in capsys.readouterr().err


def test_a_limit_below_one_is_a_usage_error(home, capsys):
    """--limit takes a whole number from 1."""
    for limit in ("0", "-5", "x"):
        with pytest.raises(SystemExit) as exited:
            cli(home, capsys, "webhooks", "messages", "--limit", limit)
        assert exited.value.code == 2


def test_one_shot_commands_do_not_refuse_a_local_handler_url(home, capsys):
    """Only what sends (serve) needs ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE for a
    handler on this machine; minting from another shell does not."""
    with (home / "actionlinks.toml").open("a") as config:
        config.write(
            '[actions.invite]\nhandler_url = "http://127.0.0.1:9/h"\n'
            'handler_secret = "whsec_' + "A" * 40 + '"\n'
        )
    code = run(["mint", "invite", "--sub", "u"], {"ACTIONLINKS_HOME": str(home)})
    assert code == 0, capsys.readouterr().err


def test_rotate_takes_an_overlap(home, capsys):
    """--overlap sets how long the old secret keeps signing."""
    endpoint = add(home, capsys)
    code, out, _ = cli(
        home,
        capsys,
        "webhooks",
        "endpoints",
        "rotate",
        endpoint["id"],
        "--overlap",
        "1h",
    )
    assert code == 0
    assert "secret: whsec_" in out


def test_a_long_list_shows_a_progress_line_on_a_terminal(home, capsys, monkeypatch):
    """Past one page, a terminal's stderr counts the messages read so far."""
    for number in range(150):
        cli(home, capsys, "webhooks", "send", "a", "--id", f"m-{number}")
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    code, out, err = cli(home, capsys, "webhooks", "messages", "--limit", "150")
    assert code == 0
    assert len(out.splitlines()) == 150
    assert "… 100 messages" in err
    assert "… 150 messages" in err
    assert err.endswith("\r\x1b[K")  # the line is wiped when the list is printed
