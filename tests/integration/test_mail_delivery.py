"""Mail sent by a real `actionlinks serve` to a real SMTP server (aiosmtpd).

Every test runs the installed command under uvicorn with its SMTP settings
pointing at a ``MailSink`` on 127.0.0.1; a short retry schedule
(``0,1,1,1,1``) stands in for the long default. Mail is parsed as a mail
client would, and its link is followed through the running service.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import time

import dkim
import httpx
import pytest
from apis import MailApi
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from mailsink import MailSink, Received
from servers import SCRIPT, Receiver, ServeProcess

from actionlinks.webhooks import generate_secret

pytestmark = pytest.mark.integration

NONCE = re.compile(r'name="nonce" value="([^"]+)"')
RENEWAL = re.compile(r'name="renewal" value="([^"]+)"')
TRANSACTIONAL = ("password-reset", "email-confirm", "magic-signin", "invite")


def mail_env(sink: MailSink, **extra: str) -> dict[str, str]:
    return {
        "ACTIONLINKS_SMTP_HOST": "127.0.0.1",
        "ACTIONLINKS_SMTP_PORT": str(sink.port),
        "ACTIONLINKS_SMTP_FROM": "Acme <links@acme.test>",
        "ACTIONLINKS_MAIL_REPLY_TO": "help@acme.test",
        "ACTIONLINKS_MAIL_RETRY_SCHEDULE": "0,1,1,1,1",
        "ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1",
        **extra,
    }


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(sink: MailSink, config: str = "", **env: str) -> ServeProcess:
        if config:
            (tmp_path / "actionlinks.toml").write_text(config)
        server = ServeProcess(tmp_path, env=mail_env(sink, **env))
        server.clients = []
        started.append(server)
        return server

    yield start
    for server in started:
        for client in server.clients:
            client.close()
        server.stop()


def link_in(received: Received, base_url: str) -> str:
    """The link of a mail's text part: a line of its own, nothing else on it."""
    text = received.message.get_body(("plain",)).get_content()
    (line,) = [x for x in text.splitlines() if x.startswith(base_url + "/a/")]
    return line


def test_a_password_reset_mail_arrives_and_its_link_sets_the_new_password(serve):
    """The new user's walk: POST /v1/emails, the mail arrives with every header,
    its text link opens the page, the new password reaches the application."""
    secret = generate_secret()
    with MailSink() as sink, Receiver(secret) as app:
        server = serve(
            sink,
            f'[actions.password-reset]\nhandler_url = "{app.url}"\n'
            f'handler_secret = "{secret}"\n',
        )
        api = MailApi(server)
        sent = api.send("password-reset", "ada@example.org")
        assert sent["id"] == "em_" + sent["jti"]
        assert sent["to"] == "ada@example.org"
        assert sent["subject"] == "Reset your password"
        assert "url" not in sent
        assert "token" not in json.dumps(sent)
        [received] = sink.wait_for(1)
        shown = api.wait_for(sent["id"], "delivered")
        message = received.message
        assert received.recipients == ["ada@example.org"]
        assert received.sender == "links@acme.test"
        assert message["From"] == "Acme <links@acme.test>"
        assert message["Reply-To"] == "help@acme.test"
        assert message["To"] == "ada@example.org"
        assert message["Subject"] == "Reset your password"
        assert message["Date"]
        assert message["Message-ID"].endswith("@acme.test>")
        assert shown["message_id"] == message["Message-ID"]
        assert message.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in message.iter_parts()] == [
            "text/plain",
            "text/html",
        ]
        assert "List-Unsubscribe" not in message
        url = link_in(received, server.base_url)
        html = message.get_body(("html",)).get_content()
        assert f'href="{url}"' in html.replace("&amp;", "&")
        with httpx.Client() as person:
            page = person.get(url)
            assert page.status_code == 200
            assert 'type="password"' in page.text
            nonce = NONCE.search(page.text).group(1)
            done = person.post(
                url,
                data={
                    "nonce": nonce,
                    "password": "correct horse battery",
                    "password_confirm": "correct horse battery",
                },
            )
            assert done.status_code == 200, done.text
            assert person.get(url).status_code == 409
    [event] = app.events
    assert event["type"] == "link.used"
    assert event["data"]["form"]["password"] == "correct horse battery"
    assert event["data"]["jti"] == sent["jti"]
    [attempt] = shown["history"]
    assert attempt["status"] == 250
    assert shown["attempts"] == 1


def test_only_list_mail_carries_rfc_8058_headers_and_one_click_unsubscribes(serve):
    """The unsubscribe mail and a list_mail action carry List-Unsubscribe
    (a one-click link), List-Unsubscribe-Post and List-Id; the four
    transactional built-ins carry none of them."""
    with MailSink() as sink:
        server = serve(sink, '[actions.digest]\nttl = "7d"\nlist_mail = true\n')
        api = MailApi(server)
        for action in TRANSACTIONAL:
            api.send(action, f"{action}@example.org")
        unsubscribe = api.send("unsubscribe", "list@example.org")
        digest = api.send("digest", "digest@example.org", sub="user:7")
        received = {r.recipients[0]: r for r in sink.wait_for(6)}
        for action in TRANSACTIONAL:
            message = received[f"{action}@example.org"].message
            for header in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"):
                assert header not in message, (action, header)
        own = received["list@example.org"]
        assert own.message["List-Unsubscribe"] == f"<{link_in(own, server.base_url)}>"
        wire = f"List-Unsubscribe: <{link_in(own, server.base_url)}>\r\n".encode()
        assert wire in own.raw
        assert own.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert own.message["List-Id"] == "<unsubscribe.acme.test>"
        other = received["digest@example.org"]
        target = other.message["List-Unsubscribe"].strip("<>")
        assert target != link_in(other, server.base_url)
        assert other.message["List-Id"] == "<digest.acme.test>"
        with httpx.Client() as mailbox:  # what a mail provider does, no cookies
            answer = mailbox.post(target, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200
        token = target.rsplit("/", 1)[1]
        status = server.cli("verify", token, "--json").stdout
        assert json.loads(status)["action"] == "unsubscribe"
        assert json.loads(status)["sub"] == "user:7"
        assert unsubscribe["state"] == "pending"
        assert digest["action"] == "digest"


def _dkim_key(tmp_path, kind):
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
        public = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)
    path = tmp_path / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path, record


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_dkim_signatures_verify_with_the_public_key_and_cover_the_list_headers(
    serve, tmp_path, kind
):
    """With the DKIM settings every mail is signed; dkimpy verifies it with the
    published key; the list headers are covered; a changed subject fails."""
    path, record = _dkim_key(tmp_path, kind)

    def dns(name, timeout=5):
        return record if name == b"mail2026._domainkey.acme.test." else None

    with MailSink() as sink:
        server = serve(
            sink,
            ACTIONLINKS_DKIM_SELECTOR="mail2026",
            ACTIONLINKS_DKIM_DOMAIN="acme.test",
            ACTIONLINKS_DKIM_PRIVATE_KEY=str(path),
        )
        api = MailApi(server)
        api.send("unsubscribe", "list@example.org")
        api.send("password-reset", "ada@example.org")
        mails = sink.wait_for(2)
    for received in mails:
        assert dkim.verify(received.raw, dnsfunc=dns), received.raw[:400]
        signature = received.message["DKIM-Signature"]
        signed = {
            h.strip().lower()
            for h in re.search(r"h=([^;]+)", signature)
            .group(1)
            .replace("\r\n", "")
            .replace(" ", "")
            .split(":")
        }
        assert {"from", "subject", "date", "message-id"} <= signed
        if "List-Unsubscribe" in received.message:
            assert {"list-unsubscribe", "list-unsubscribe-post"} <= signed
        tampered = received.raw.replace(b"Subject: ", b"Subject: Re: ", 1)
        assert not dkim.verify(tampered, dnsfunc=dns)


def test_a_deferred_mail_is_delivered_once_on_the_next_attempt(serve):
    """451 at RCPT, then OK: two attempts, one mail in the inbox."""
    with MailSink(replies=[("RCPT", "451 4.7.1 Greylisted, come back")]) as sink:
        server = serve(sink)
        api = MailApi(server)
        sent = api.send("magic-signin", "ada@example.org")
        shown = api.wait_for(sent["id"], "delivered")
        time.sleep(1.5)  # a second delivery would have had time to arrive
        assert len(sink.received) == 1
    assert [a["status"] for a in shown["history"]] == [451, 250]
    assert "Greylisted" in shown["history"][0]["response"]


def test_a_refused_mail_fails_is_not_retried_and_can_be_resent(serve):
    """550 at RCPT: failed after one attempt, the reply kept, nothing tried
    again; listed among the dead letters; resent by hand, it arrives with the
    same Message-ID and link."""
    with MailSink(replies=[("RCPT", "550 5.1.1 No such mailbox")]) as sink:
        server = serve(sink)
        api = MailApi(server)
        sent = api.send("invite", "nobody@example.org")
        shown = api.wait_for(sent["id"], "failed")
        time.sleep(2.5)  # the schedule would have tried twice more by now
        again = api.mail(sent["id"])
        assert sink.received == []
        dead = api.client.get("/v1/emails", params={"state": "failed"}).json()
        assert [m["id"] for m in dead["emails"]] == [sent["id"]]
        resent = api.client.post(f"/v1/emails/{sent['id']}/resend")
        assert resent.status_code == 202
        [received] = sink.wait_for(1)
        final = api.wait_for(sent["id"], "delivered")
    assert received.message["Message-ID"] == final["message_id"]
    assert [a["status"] for a in final["history"]] == [550, 250]
    assert again["attempts"] == 1
    assert again["next_attempt_at"] is None
    assert shown["history"][0]["status"] == 550
    assert "No such mailbox" in shown["history"][0]["response"]


def test_a_mail_accepted_while_the_smtp_server_is_down_is_sent_once_it_is_up(serve):
    """Accepted (202) with no SMTP server; attempts fail with the reason; the
    server comes up; the mail arrives once."""
    sink = MailSink()
    server = serve(sink)
    api = MailApi(server)
    sent = api.send("email-confirm", "ada@example.org")
    deadline = time.monotonic() + 30
    while not (shown := api.mail(sent["id"]))["history"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert shown["state"] == "pending"
    assert "cannot connect" in shown["history"][0]["error"]
    with sink:
        api.wait_for(sent["id"], "delivered")
        time.sleep(1.5)
        assert len(sink.received) == 1


def test_mail_accepted_before_a_sigkill_is_delivered_after_the_restart(serve, tmp_path):
    """Twenty mails accepted with the SMTP server down; the service is killed;
    restarted with the server up, every mail arrives exactly once."""
    sink = MailSink()
    server = serve(sink)
    api = MailApi(server)
    ids = [api.send("email-confirm", f"u{i}@example.org")["id"] for i in range(20)]
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    with sink:
        again = serve(sink)
        api = MailApi(again)
        for mail_id in ids:
            api.wait_for(mail_id, "delivered", seconds=60)
        time.sleep(1)
        received = list(sink.received)
    assert sorted(r.recipients[0] for r in received) == sorted(
        f"u{i}@example.org" for i in range(20)
    )
    assert len({r.message["Message-ID"] for r in received}) == 20


def test_a_burst_of_a_thousand_mails_arrives_each_exactly_once(serve):
    """1,000 mails accepted as fast as the API takes them: 1,000 in the inbox,
    each recipient once."""
    with MailSink() as sink:
        server = serve(sink)
        api = MailApi(server)
        for i in range(1000):
            api.send("email-confirm", f"burst{i}@example.org", sub=f"user:{i}")
        received = sink.wait_for(1000, seconds=120)
        time.sleep(1)
        received = list(sink.received)
    recipients = [r.recipients[0] for r in received]
    assert len(recipients) == 1000
    assert set(recipients) == {f"burst{i}@example.org" for i in range(1000)}


def test_an_expired_mailed_link_is_renewed_by_mail_to_the_same_address(serve):
    """An action without handler_url: the expiry page offers a new link; asking
    sends a new mail to the same address, whose link works."""
    with MailSink() as sink:
        server = serve(sink, ACTIONLINKS_LEEWAY="0")
        api = MailApi(server)
        sent = api.send("email-confirm", "ada@example.org", ttl=1)
        [first] = sink.wait_for(1)
        url = link_in(first, server.base_url)
        time.sleep(1.2)
        with httpx.Client() as person:
            expired = person.get(url)
            assert expired.status_code == 410
            renewal = RENEWAL.search(expired.text).group(1)
            answer = person.post(f"{server.base_url}/renew", data={"renewal": renewal})
            assert answer.status_code == 200, answer.text
            assert "New link sent" in answer.text
            second = sink.wait_for(2)[1]
            assert second.recipients == ["ada@example.org"]
            fresh = link_in(second, server.base_url)
            assert fresh != url
            assert person.get(fresh).status_code == 200
            # Asked again: the link was renewed already.
            again = person.post(f"{server.base_url}/renew", data={"renewal": renewal})
            assert again.status_code == 409
    assert sent["state"] == "pending"


def test_a_link_the_service_did_not_mail_is_not_offered_renewal_by_mail(serve):
    """Minted by the CLI (delivered by the app itself), it expires with no
    renewal offer: the service would not know where to send a new one."""
    with MailSink() as sink:
        server = serve(sink, ACTIONLINKS_LEEWAY="0")
        url = server.cli("mint", "email-confirm", "--sub", "x", "--ttl", "1s").stdout
        time.sleep(1.2)
        expired = httpx.get(url.strip())
    assert expired.status_code == 410
    assert RENEWAL.search(expired.text) is None
    assert sink.received == []


def test_the_cli_sends_a_mail_that_the_running_service_delivers(serve):
    """`actionlinks mail send` stores it; the service sends it; `mail show`
    tells its attempts; nothing prints the link."""
    with MailSink() as sink:
        server = serve(sink)
        sent = server.cli(
            "mail", "send", "invite", "--to", "bob@example.org", "--sub", "user:9"
        ).stdout
        mail_id = sent.split(":", 1)[0]
        assert mail_id.startswith("em_")
        [received] = sink.wait_for(1)
        link = link_in(received, server.base_url)
        assert link not in sent
        deadline = time.monotonic() + 30
        while "delivered" not in (shown := server.cli("mail", "show", mail_id).stdout):
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert "to bob@example.org: delivered, 1 attempt" in shown
    assert "250" in shown
    assert link not in shown
    as_json = json.loads(server.cli("mail", "show", mail_id, "--json").stdout)
    assert as_json["state"] == "delivered"
    listed = server.cli("mail", "list", "--state", "delivered").stdout
    assert f"{mail_id}  invite  bob@example.org  delivered" in listed
    assert (
        "no mail in state failed"
        in server.cli("mail", "list", "--state", "failed").stdout
    )
    assert "sends it again" in server.cli("mail", "resend", mail_id).stdout
    unknown = subprocess.run(
        [str(SCRIPT), "mail", "show", "em_nope"],
        env=server.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert unknown.returncode == 2
    assert "no mail with this id" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    # Without smtp_from where the CLI reads it, it says whom the mail is from.
    bare = {k: v for k, v in server.env.items() if k != "ACTIONLINKS_SMTP_FROM"}
    noted = subprocess.run(
        [str(SCRIPT), "mail", "send", "invite", "--to", "c@example.org", "--sub", "9"],
        env=bare,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "note: the mail is from actionlinks@localhost" in noted.stderr


def test_bad_requests_get_typed_errors_and_send_nothing(serve):
    """Bad address, unknown action, wrong scope, unknown id: 4xx with a code;
    no mail is stored or sent."""
    with MailSink() as sink:
        server = serve(sink)
        api = MailApi(server)
        reader = MailApi(server, "--scope", "mail:read")
        post = api.client.post
        cases = [
            ({"action": "invite", "to": "a@b.example\r\nBcc: x@y.z", "sub": "1"}, "to"),
            ({"action": "invite", "to": "Ada <a@b.example>", "sub": "1"}, "to"),
            ({"action": "nope", "to": "a@b.example", "sub": "1"}, "action"),
            ({"action": "invite", "to": "a@b.example", "sub": "1", "ttl": 0}, "ttl"),
            ({"action": "invite", "to": "a@b.example", "sub": "1", "data": []}, "data"),
            ({"action": "invite", "to": "a@b.example", "sub": "1", "x": 1}, "x"),
            ({"action": "invite", "sub": "1"}, "to"),
        ]
        for body, field in cases:
            answer = post("/v1/emails", json=body)
            assert answer.status_code == 422, (body, answer.text)
            assert answer.json()["field"] == field
        refused = reader.client.post(
            "/v1/emails", json={"action": "invite", "to": "a@b.example", "sub": "1"}
        )
        assert refused.status_code == 403
        assert refused.json()["error"] == "insufficient_scope"
        assert reader.client.get("/v1/emails/em_unknown").status_code == 404
        assert reader.client.get("/v1/emails/msg_1").status_code == 404
        time.sleep(1)
    assert sink.received == []
    assert sink.sessions == 0
