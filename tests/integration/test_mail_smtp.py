"""The mailer and its judgements against a real SMTP server (aiosmtpd) on 127.0.0.1.

Each SMTP outcome the outbox must tell apart: taken (250), deferred (4xx at
RCPT or DATA: tried again), refused (5xx: failed for good, not retried), no
server, a refused login; and the connection handling: one connection reused
for many mails, a stale one dropped without losing the mail, STARTTLS and
implicit TLS verified against a certificate the client trusts.
"""

from __future__ import annotations

import asyncio
import email.policy
from datetime import UTC, datetime, timedelta

import anyio
import anyio.to_thread
import pytest
from mailsink import MailSink, self_signed

from actionlinks.clock import SystemClock
from actionlinks.errors import MailDeliveryError
from actionlinks.home import initialize
from actionlinks.mail import MailTemplates, compose
from actionlinks.mail import smtp as smtp_module
from actionlinks.mail.delivery import MailDeliverer
from actionlinks.mail.smtp import Mailer, SmtpServer
from actionlinks.outbox import worker as worker_module
from actionlinks.outbox.model import Delivery, Message
from actionlinks.service import Service
from actionlinks.settings import Secret, Settings

pytestmark = pytest.mark.integration

SENDER = "links@acme.test"
URL = "https://links.acme.test/a/token-of-the-test"


def raw_mail(to: str = "ada@example.org") -> bytes:
    mail = MailTemplates().render(
        "password-reset",
        {"url": URL, "expires_at": "soon", "action": "password-reset", "data": {}},
    )
    message = compose(mail, sender=SENDER, to=to, now=datetime(2026, 12, 2, tzinfo=UTC))
    return message.as_bytes(policy=email.policy.SMTP)


def delivery(to: str = "ada@example.org") -> Delivery:
    message = Message(
        message_id="em_test",
        channel="mail",
        kind="password-reset",
        body=raw_mail(to),
        created_at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    return Delivery(delivery_id=1, message=message, destination=to)


def mailer_for(sink: MailSink, **options) -> Mailer:
    return Mailer(SmtpServer(host="127.0.0.1", port=sink.port, timeout=5, **options))


async def attempt(mailer: Mailer):
    deliverer = MailDeliverer(mailer=mailer, sender=SENDER, clock=SystemClock())
    return await deliverer(delivery())


async def test_a_taken_mail_is_delivered_with_the_servers_reply_recorded():
    """250 → delivered; the envelope and the bytes are the stored ones."""
    with MailSink() as sink:
        mailer = mailer_for(sink)
        result = await attempt(mailer)
        await mailer.aclose()
    assert result.outcome == "delivered"
    assert result.attempt.status == 250
    assert "queued" in result.attempt.response
    (received,) = sink.received
    assert received.sender == SENDER
    assert received.recipients == ["ada@example.org"]
    assert received.message["Subject"] == "Reset your password"
    assert URL in received.message.get_body(("plain",)).get_content().splitlines()


@pytest.mark.parametrize("stage", ["RCPT", "DATA"])
async def test_a_4xx_is_tried_again_and_the_connection_stays_usable(stage):
    """451 at RCPT or DATA defers the mail (retry); the next mail goes through
    on the same connection."""
    with MailSink(replies=[(stage, "451 4.3.0 Try again later")]) as sink:
        mailer = mailer_for(sink)
        deferred = await attempt(mailer)
        taken = await attempt(mailer)
        await mailer.aclose()
    assert deferred.outcome == "retry"
    assert deferred.attempt.status == 451
    assert "Try again later" in deferred.attempt.response
    assert taken.outcome == "delivered"
    assert len(sink.received) == 1
    assert sink.sessions == 1


@pytest.mark.parametrize(
    ("stage", "reply"),
    [("RCPT", "550 5.1.1 No such user"), ("DATA", "552 5.3.4 Message too big")],
)
async def test_a_5xx_fails_the_mail_for_good(stage, reply):
    """5xx at RCPT or DATA is permanent: failed, with the reply kept."""
    with MailSink(replies=[(stage, reply)]) as sink:
        mailer = mailer_for(sink)
        result = await attempt(mailer)
        await mailer.aclose()
    assert result.outcome == "failed"
    assert result.attempt.status == int(reply[:3])
    assert reply[10:] in result.attempt.response
    assert sink.received == []


async def test_no_server_is_a_retry_with_the_reason():
    """A refused connection has no reply code; it is tried again."""
    sink = MailSink()  # never started: nothing listens on its port
    result = await attempt(mailer_for(sink))
    assert result.outcome == "retry"
    assert result.attempt.status is None
    assert f"cannot connect to 127.0.0.1:{sink.port}" in result.attempt.error


async def test_many_mails_share_one_connection():
    """Ten mails one after the other: one SMTP session."""
    with MailSink() as sink:
        mailer = mailer_for(sink)
        for _ in range(10):
            assert (await attempt(mailer)).outcome == "delivered"
        await mailer.aclose()
    assert len(sink.received) == 10
    assert sink.sessions == 1


async def test_concurrent_mails_use_at_most_the_pools_connections():
    """Forty mails at once: every one arrives over at most four sessions."""
    with MailSink() as sink:
        mailer = mailer_for(sink)
        outcomes = []

        async def one():
            outcomes.append((await attempt(mailer)).outcome)

        async with anyio.create_task_group() as tasks:
            for _ in range(40):
                tasks.start_soon(one)
        await mailer.aclose()
    assert outcomes == ["delivered"] * 40
    assert len(sink.received) == 40
    assert sink.sessions <= smtp_module.CONNECTIONS


async def test_a_connection_the_server_dropped_is_replaced_without_losing_the_mail(
    monkeypatch,
):
    """The server restarts between two mails: the idle connection is found
    dead (NOOP) and the mail goes over a new one, once."""
    monkeypatch.setattr(smtp_module, "IDLE_CHECK", 0.0)
    sink = MailSink().start()
    try:
        mailer = mailer_for(sink)
        assert (await attempt(mailer)).outcome == "delivered"
        sink.stop()
        sink.start()
        result = await attempt(mailer)
        await mailer.aclose()
    finally:
        sink.stop()
    assert result.outcome == "delivered"
    assert len(sink.received) == 2
    assert sink.sessions == 2


async def test_a_refused_login_is_retried_not_failed_and_the_password_is_not_shown():
    """A wrong password is the service's fault, not the mail's: retry."""
    with MailSink(login=("mailer", "right-password")) as sink:
        wrong = mailer_for(
            sink, username="mailer", password=Secret("wrong-password-9f2")
        )
        refused = await attempt(wrong)
        right = mailer_for(sink, username="mailer", password=Secret("right-password"))
        taken = await attempt(right)
        await right.aclose()
    assert refused.outcome == "retry"
    assert "the login failed" in refused.attempt.error
    assert "wrong-password-9f2" not in repr(refused) + repr(wrong)
    assert sink.refused_logins >= 1  # each mechanism the client tried
    assert taken.outcome == "delivered"


@pytest.mark.parametrize("tls", ["starttls", "tls"])
async def test_tls_modes_verify_the_server_certificate(tls, tmp_path, monkeypatch):
    """STARTTLS and implicit TLS send once the certificate verifies (here a
    trusted self-signed one), with a login; an untrusted one is a retry."""
    certificate, key = self_signed(tmp_path)
    login = ("mailer", "secret-pass")
    with MailSink(tls=tls, login=login, certificate=certificate, key=key) as sink:
        untrusted = await attempt(
            mailer_for(sink, tls=tls, username=login[0], password=Secret(login[1]))
        )
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
        mailer = mailer_for(sink, tls=tls, username=login[0], password=Secret(login[1]))
        trusted = await attempt(mailer)
        await mailer.aclose()
    assert untrusted.outcome == "retry"
    assert trusted.outcome == "delivered", trusted
    assert len(sink.received) == 1


async def test_a_5xx_is_a_typed_error_from_the_mailer():
    """The mailer raises MailDeliveryError with the reply and permanence."""
    with MailSink(replies=[("RCPT", "550 5.7.1 Relaying denied")]) as sink:
        mailer = mailer_for(sink)
        with pytest.raises(MailDeliveryError) as raised:
            await mailer.send(sender=SENDER, recipient="x@example.org", message=b"x")
        await mailer.aclose()
    assert raised.value.permanent
    assert raised.value.reply_code == 550
    assert raised.value.code == "mail_delivery"
    assert "Relaying denied" in raised.value.reply


def test_the_smtp_settings_build_the_server_without_showing_the_password(tmp_path):
    """From the ACTIONLINKS_SMTP_* settings; EHLO names the sender's domain."""
    from actionlinks.settings import Settings

    settings = Settings.from_env(
        {
            "ACTIONLINKS_SMTP_HOST": "smtp.acme.test",
            "ACTIONLINKS_SMTP_PORT": "465",
            "ACTIONLINKS_SMTP_TLS": "tls",
            "ACTIONLINKS_SMTP_USERNAME": "mailer",
            "ACTIONLINKS_SMTP_PASSWORD": "hunter2-secret",
            "ACTIONLINKS_SMTP_FROM": "Acme <links@acme.test>",
        },
        cwd=tmp_path,
    )
    server = SmtpServer.from_settings(settings)
    assert (server.host, server.port, server.tls) == ("smtp.acme.test", 465, "tls")
    assert server.local_hostname == "acme.test"
    assert "hunter2" not in repr(server) + repr(Mailer(server))
    assert server.timeout == timedelta(seconds=30).total_seconds()


async def test_closing_the_service_lets_the_mail_in_flight_finish_once(tmp_path):
    """The service closes (a restart) while the server is taking a mail: the
    attempt finishes and is recorded, so the restarted service does not send
    it a second time."""
    with MailSink(hold=0.5) as sink:
        env = {
            "ACTIONLINKS_HOME": str(tmp_path),
            "ACTIONLINKS_SMTP_HOST": "127.0.0.1",
            "ACTIONLINKS_SMTP_PORT": str(sink.port),
        }
        settings = Settings.from_env(env)
        initialize(settings, clock=SystemClock())
        async with Service(settings, log_warnings=False) as service:
            sent = await service.mail.send("invite", to="a@example.org", subject="u")
            await anyio.to_thread.run_sync(sink.wait_for, 1)
        async with Service(settings, log_warnings=False) as service:
            await anyio.sleep(1.5)  # time enough to send anything pending again
            record = await service.mail.message(sent.message.message_id)
    assert record.state == "delivered"
    assert record.deliveries[0].attempts == 1
    assert len(sink.received) == 1


@pytest.mark.parametrize(
    ("stage", "reply"),
    [
        ("MAIL", "553 5.7.1 Sender address rejected: not owned by user"),
        ("MAIL", "530 5.7.0 Authentication required"),
        ("RCPT", "530 5.7.0 Authentication required"),
    ],
)
async def test_a_refused_sender_or_a_missing_login_is_retried_not_failed(stage, reply):
    """5xx about the service's settings (the sender, a login), not the mail:
    tried again, so the mail goes once the settings are mended."""
    with MailSink(replies=[(stage, reply)]) as sink:
        mailer = mailer_for(sink)
        refused = await attempt(mailer)
        taken = await attempt(mailer)
        await mailer.aclose()
    assert refused.outcome == "retry"
    assert refused.attempt.status == int(reply[:3])
    assert "check the SMTP settings" in refused.attempt.error
    assert taken.outcome == "delivered"
    assert len(sink.received) == 1


async def test_a_slow_answer_to_the_final_dot_is_awaited_not_sent_twice():
    """The server takes a second to answer the mail's end, longer than the
    command timeout: the client waits (RFC 5321's ten minutes) and the mail
    arrives once."""
    with MailSink(hold=1.0) as sink:
        mailer = Mailer(SmtpServer(host="127.0.0.1", port=sink.port, timeout=0.3))
        result = await attempt(mailer)
        await mailer.aclose()
    assert result.outcome == "delivered"
    assert len(sink.received) == 1


async def test_no_answer_to_the_final_dot_at_all_is_a_retry(monkeypatch):
    """Past the final timeout the outcome is unknown: tried again (at least
    once), never failed."""
    monkeypatch.setattr(smtp_module, "FINAL_TIMEOUT", 0.2)
    with MailSink(hold=1.0) as sink:
        result = await attempt(mailer_for(sink))
    assert result.outcome == "retry"
    assert result.attempt.status is None


@pytest.mark.parametrize("host", ["smtp.example.com", "10.0.0.5"])
def test_a_login_without_tls_off_this_machine_is_refused(host):
    """The password would cross the network in clear text."""
    from actionlinks.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="clear text"):
        SmtpServer(host=host, port=587, username="u", password=Secret("p"))
    for local in ("localhost", "127.0.0.1", "::1"):
        SmtpServer(host=local, port=25, username="u", password=Secret("p"))
    SmtpServer(host=host, port=587, tls="starttls", username="u", password=Secret("p"))


async def test_a_stopping_service_starts_no_mail_it_cannot_finish(
    tmp_path, monkeypatch
):
    """One connection, a server slow to take each mail, the service stopped
    while the first is being taken: the second is not begun (it waited for
    the connection without a claim), so nothing is cut off half-sent; after a
    restart each mail arrives exactly once."""
    monkeypatch.setattr(worker_module, "DRAIN", timedelta(seconds=1))
    with MailSink(hold=0.7) as sink:
        env = {
            "ACTIONLINKS_HOME": str(tmp_path),
            "ACTIONLINKS_SMTP_HOST": "127.0.0.1",
            "ACTIONLINKS_SMTP_PORT": str(sink.port),
            "ACTIONLINKS_SMTP_CONNECTIONS": "1",
        }
        settings = Settings.from_env(env)
        initialize(settings, clock=SystemClock())
        async with Service(settings, log_warnings=False) as service:
            for number in range(2):
                await service.mail.send(
                    "invite", to=f"u{number}@example.org", subject="u"
                )
            await anyio.to_thread.run_sync(sink.wait_for, 1)
        async with Service(settings, log_warnings=False) as service:
            await anyio.to_thread.run_sync(sink.wait_for, 2)
            await anyio.sleep(1.5)  # time enough for a second copy to arrive
    assert sorted(r.recipients[0] for r in sink.received) == [
        "u0@example.org",
        "u1@example.org",
    ]


async def test_closing_the_mailer_does_not_wait_on_a_server_that_stopped_answering():
    """Four idle connections to a server that never answers QUIT: closing
    gives up on them together, within the close timeout, not one by one."""

    done = asyncio.Event()
    writers = []

    async def mute_at_quit(reader, writer):
        writers.append(writer)
        writer.write(b"220 ready\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"QUIT":
                await done.wait()
                break
            if verb == b"DATA":
                writer.write(b"354 go on\r\n")
                while await reader.readline() != b".\r\n":
                    pass
                writer.write(b"250 taken\r\n")
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()

    server = await asyncio.start_server(mute_at_quit, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mailer = Mailer(SmtpServer(host="127.0.0.1", port=port, timeout=5))
    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(attempt, mailer)
    with anyio.fail_after(smtp_module.CLOSE_TIMEOUT + 3):  # not four times the timeout
        await mailer.aclose()
    done.set()
    for writer in writers:
        writer.close()
        await writer.wait_closed()
    server.close()
    await server.wait_closed()


async def test_a_reply_quoting_the_link_is_kept_without_its_token(caplog):
    """A content filter quotes the mail's URL in its refusal: the attempt's
    response, its error and the log keep the reply, not the bearer token."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl"
    reply = f"550 5.7.1 URL https://links.acme.test/a/{token} listed in DBL; {token}"
    with MailSink(replies=[("DATA", reply)]) as sink:
        mailer = mailer_for(sink)
        result = await attempt(mailer)
        await mailer.aclose()
    assert result.outcome == "failed"
    shown = result.attempt.response + result.attempt.error + caplog.text
    assert token not in shown
    assert "eyJ" not in shown
    assert "https://links.acme.test/a/… listed in DBL" in result.attempt.response
