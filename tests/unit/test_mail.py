"""The mail of each action: templates, overrides, one message with two parts."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from actionlinks.actions import DEFAULT_ACTIONS
from actionlinks.errors import ConfigurationError, InvalidArgumentError
from actionlinks.mail import MailTemplates, check_address, compose

URL = "https://links.example.test/a/eyJhbGciOiJIUzI1NiJ9.e30.sig?x=1&y=2"
WHEN = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def context(**extra):
    return {"url": URL, "expires_at": "2026-12-02 10:00 UTC", "action": "x", **extra}


@pytest.mark.parametrize("action", [a.name for a in DEFAULT_ACTIONS])
def test_every_built_in_action_has_its_own_mail_with_the_link_alone_on_a_line(
    action,
):
    """Subject, text and HTML for each built-in; the text part's link is its
    own line, byte for byte; the HTML part links to it, escaped."""
    mail = MailTemplates().render(action, context(action=action))
    assert mail.subject
    assert "\n" not in mail.subject
    assert URL in mail.text.splitlines()
    assert 'href="' + URL.replace("&", "&amp;") + '"' in mail.html
    assert mail.subject != MailTemplates().render("custom-action", context()).subject


def test_an_action_without_templates_gets_the_default_mail():
    """A declared action with no templates of its own still has a mail."""
    mail = MailTemplates().render("team-join", context(action="team-join"))
    assert mail.subject == "Your link for team-join"
    assert URL in mail.text.splitlines()


def test_html_is_escaped_and_subjects_stay_one_line(tmp_path):
    """Data cannot inject markup into the HTML part or a header into the subject."""
    folder = tmp_path / "email" / "invite"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Join {{ team }}\n")
    (folder / "body.html").write_text("<p>{{ team }}</p>")
    hostile = "<script>x</script>\r\nBcc: victim@example.com"
    mail = MailTemplates(tmp_path).render("invite", context(team=hostile))
    assert "<script>" not in mail.html
    assert "&lt;script&gt;" in mail.html
    assert "\r" not in mail.subject
    assert "\n" not in mail.subject
    # The override replaced subject and HTML; the packaged text part remains.
    assert mail.subject.startswith("Join <script>")
    assert "invited" in mail.text


def test_a_broken_override_is_a_configuration_error(tmp_path):
    """A template that does not render names the action, never a traceback."""
    folder = tmp_path / "email" / "invite"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("{{ missing_variable }}")
    with pytest.raises(ConfigurationError, match="invite"):
        MailTemplates(tmp_path).render("invite", context())


def test_a_composed_mail_parses_with_both_parts_and_every_header():
    """multipart/alternative, text then HTML; From, To, Reply-To, Subject, Date
    and a Message-ID in the sender's domain; extra headers as given."""
    mail = MailTemplates().render("password-reset", context(action="password-reset"))
    message = compose(
        mail,
        sender="links@example.com",
        to="ada@example.org",
        now=WHEN,
        reply_to="help@example.com",
        headers={"List-Id": "<news.example.com>"},
    )
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert (text.get_content_type(), html.get_content_type()) == (
        "text/plain",
        "text/html",
    )
    assert URL in text.get_content().splitlines()
    assert parsed["From"] == "links@example.com"
    assert parsed["To"] == "ada@example.org"
    assert parsed["Reply-To"] == "help@example.com"
    assert parsed["Subject"] == "Reset your password"
    assert parsed["Date"] == "Wed, 02 Dec 2026 09:30:00 +0000"
    assert parsed["Message-ID"].endswith("@example.com>")
    assert parsed["List-Id"] == "<news.example.com>"


@pytest.mark.parametrize(
    "address",
    [
        "",
        "ada",
        "ada@",
        "@example.com",
        "ada@example",
        "Ada <ada@example.com>",
        "ada@example.com, eve@example.com",
        "ada@example.com\r\nBcc: eve@example.com",
        "ada@exa mple.com",
        "a" * 250 + "@example.com",
        7,
        "a@[127.0.0.1]",
        "a@127.0.0.1",
        "a%victim.example@relay.example.com",
        "a!b@example.com",
        "a=?utf-8?q?x?=@example.com",
        '"a b"@example.com',
        "a..b@example.com",
        ".a@example.com",
        "a@b@example.com",
        "a@-example.com",
        "a@example.com.",
        "a@example.123",
        "adä@example.com",
        "a@exämple.com",
        "a" * 65 + "@example.com",
    ],
)
def test_anything_but_one_plain_address_is_refused(address):
    """One local@domain, no display names, lists, line breaks, quoting,
    source routes (%, !), encoded words or address literals."""
    with pytest.raises(InvalidArgumentError) as caught:
        check_address(address)
    assert caught.value.field == "to"


def test_plain_addresses_are_accepted():
    """Ordinary and local addresses pass unchanged."""
    for address in (
        "ada@example.org",
        "ada+links@mail.example.co.uk",
        "root@localhost",
        "o'brien@example.ie",
        "first.last=tag@sub.example-domain.com",
        "a@xn--bcher-kva.example",
    ):
        assert check_address(address) == address


def test_the_raw_text_part_keeps_the_link_whole_on_one_line():
    """ASCII text with lines under 998 octets goes as 7bit: the raw message
    holds the link unbroken; non-ASCII or longer lines fall back to
    quoted-printable, still decoding to the same text."""
    mail = MailTemplates().render("invite", context(action="invite"))
    raw = compose(mail, sender="a@example.com", to="b@example.org", now=WHEN)
    assert b"\r\n" + URL.encode() + b"\r\n" in raw.as_bytes()
    accented = MailTemplates().render("invite", context(action="invite"))
    accented = type(accented)(
        subject="Été", text=accented.text + "Café\n", html=accented.html
    )
    folded = compose(accented, sender="a@example.com", to="b@example.org", now=WHEN)
    assert b"quoted-printable" in folded.as_bytes()
    parsed = email.message_from_bytes(folded.as_bytes(), policy=email.policy.default)
    assert "Café" in parsed.get_body(("plain",)).get_content()
    assert URL in parsed.get_body(("plain",)).get_content().splitlines()


@pytest.mark.parametrize(
    "body", ["{{ 1 / data.zero }}", "{{ data.items[5] }}", "{{ url.nothing() }}"]
)
def test_a_template_raising_anything_is_a_configuration_error(tmp_path, body):
    """Whatever a template's code raises (division, index, a call), render
    names the action with a ConfigurationError, never a bare exception."""
    folder = tmp_path / "email" / "invite"
    folder.mkdir(parents=True)
    (folder / "body.txt").write_text(body)
    with pytest.raises(ConfigurationError, match="invite"):
        MailTemplates(tmp_path).render(
            "invite", context(action="invite", data={"zero": 0, "items": []})
        )


def test_a_written_header_block_that_differs_from_what_was_set_is_refused(
    monkeypatch,
):
    """Defence in depth: should the email package ever write a header that was
    not set (an injection), the mail is refused on 'data'."""
    from actionlinks.mail.message import to_bytes

    mail = MailTemplates().render("invite", context(action="invite"))
    message = compose(mail, sender="a@example.com", to="b@example.org", now=WHEN)
    raw = message.as_bytes()
    assert to_bytes(message) == raw
    injected = raw.replace(b"\r\nDate:", b"\r\nBcc: eve@example.org\r\nDate:", 1)
    monkeypatch.setattr(type(message), "as_bytes", lambda self: injected)
    with pytest.raises(InvalidArgumentError) as raised:
        to_bytes(message)
    assert raised.value.field == "data"


def test_boundary_and_message_id_cannot_be_predicted_from_random():
    """They come from secrets: reseeding the random module (whose state a
    reader of enough mails could recover) does not repeat them, so no data can
    be written to close a part and open one of its own."""
    import random

    mail = MailTemplates().render("invite", context(action="invite"))
    seen = set()
    for _ in range(2):
        random.seed(7)
        message = compose(mail, sender="a@example.com", to="b@example.org", now=WHEN)
        seen.add((message.get_boundary(), message["Message-ID"]))
    assert len(seen) == 2
    boundary, message_id = seen.pop()
    assert boundary.startswith("=_")
    assert len(boundary) == 34
    assert message_id.endswith("@example.com>")


@pytest.mark.parametrize(
    "extra", ["<" * 600 + "\x0b" + "<" * 600, "nul\x00byte", "<" * 1000]
)
def test_text_that_7bit_cannot_carry_goes_quoted_printable(extra):
    """A line over 998 octets on the wire (a vertical tab does not end one) or
    a control code makes the part quoted-printable, which any server takes."""
    mail = MailTemplates().render("invite", context(action="invite"))
    mail = type(mail)(subject=mail.subject, text=mail.text + extra, html=mail.html)
    raw = compose(mail, sender="a@example.com", to="b@example.org", now=WHEN)
    text = raw.as_bytes().split(b"\r\n\r\n", 2)[1]
    assert b"quoted-printable" in text
    assert all(len(line) <= 998 for line in raw.as_bytes().split(b"\r\n"))
