"""The mail hub: one stored mail per link, data checked before minting, list
headers, renewal by mail, the DKIM signer and the mail settings."""

from __future__ import annotations

import base64
import email
import email.policy
from datetime import timedelta

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from actionlinks.actions import DEFAULT_ACTIONS, Action
from actionlinks.errors import (
    ConfigurationError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    NotRenewableError,
)
from actionlinks.home import initialize
from actionlinks.mail import MailTemplates
from actionlinks.mail.dkim import DkimSigner
from actionlinks.mail.hub import MailHub, headers_of
from actionlinks.mail.message import parse_mailbox
from actionlinks.outbox import Attempt, RetryPolicy
from actionlinks.outbox.model import Message
from actionlinks.registry import ActionRegistry
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.stores import MemoryStore

BASE = "https://links.example.test"
DIGEST = Action(name="digest", ttl=timedelta(days=7), list_mail=True)


@pytest.fixture
def store(clock):
    return MemoryStore(clock=clock)


def make_hub(store, clock, issuer, *, actions=None, overrides=None, dkim=None):
    registry = ActionRegistry(
        issuer,
        ledger=store.ledger,
        base_url=BASE,
        clock=clock,
        actions=actions or (*DEFAULT_ACTIONS, DIGEST),
        journal=store.links,
    )
    woken = []
    hub = MailHub(
        registry=registry,
        outbox=store.outbox,
        templates=MailTemplates(overrides),
        sender="Acme <links@acme.test>",
        reply_to=None,
        clock=clock,
        policy=RetryPolicy([timedelta(seconds=2), timedelta(seconds=30)]),
        dkim=dkim,
        wake=lambda: woken.append(1),
        links=store.links,
    )
    return hub, registry, woken


@pytest.fixture
def hub(store, clock, issuer):
    return make_hub(store, clock, issuer)


def parsed(record):
    return email.message_from_bytes(record.message.body, policy=email.policy.default)


def minted_count(registry, monkeypatch):
    calls = []
    mint = ActionRegistry.mint

    async def counting(self, *args, **kwargs):
        calls.append(args)
        return await mint(self, *args, **kwargs)

    monkeypatch.setattr(ActionRegistry, "mint", counting)
    return calls


async def test_a_mail_is_stored_under_its_links_jti_and_wakes_the_worker(
    hub, store, clock
):
    """em_<jti>, channel mail, the action as kind, one delivery to the address,
    due after the schedule's first wait; Reply-To falls back to From."""
    mailer, _, woken = hub
    record = await mailer.send("invite", to="ada@example.org", subject="user:1")
    message = record.message
    assert message.message_id.startswith("em_")
    assert message.channel == "mail"
    assert message.kind == "invite"
    [delivery] = record.deliveries
    assert delivery.destination == "ada@example.org"
    assert delivery.next_attempt_at == clock.now() + timedelta(seconds=2)
    assert woken == [1]
    mail = parsed(record)
    assert mail["Reply-To"] == "Acme <links@acme.test>"
    jti = message.message_id.removeprefix("em_")
    status = await store.links.status(jti)
    assert status.subject == "user:1"
    assert b"\r\n" in message.body  # stored as it is sent
    assert headers_of(message)["subject"] == mail["Subject"]
    assert await mailer.recipient(jti) == "ada@example.org"


@pytest.mark.parametrize(
    "to",
    [
        "ada@example.org\r\nBcc: eve@example.org",
        "Ada <ada@example.org>",
        "ada@example.org, eve@example.org",
        "ada",
        "adä@example.org",
        "a" * 250 + "@example.org",
    ],
)
async def test_a_bad_address_mints_nothing(hub, monkeypatch, to):
    """The address is checked before a link is minted."""
    mailer, registry, _ = hub
    minted = minted_count(registry, monkeypatch)
    with pytest.raises(InvalidArgumentError) as raised:
        await mailer.send("invite", to=to, subject="user:1")
    assert raised.value.field == "to"
    assert minted == []


async def test_data_a_template_needs_is_checked_before_minting(
    store, clock, issuer, tmp_path, monkeypatch
):
    """An override that uses data.team passes the start-up check; a request
    without it is a 422 on 'data' and no link (nor a revoked earlier one);
    with it, the mail says it."""
    folder = tmp_path / "email" / "invite"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Join {{ data.team }}")
    mailer, registry, _ = make_hub(store, clock, issuer, overrides=tmp_path)
    mailer.check()  # at start-up any data is assumed: requests are checked
    minted = minted_count(registry, monkeypatch)
    with pytest.raises(InvalidArgumentError) as raised:
        await mailer.send("invite", to="ada@example.org", subject="u")
    assert raised.value.field == "data"
    assert minted == []
    record = await mailer.send(
        "invite", to="ada@example.org", subject="u", data={"team": "Blue <b>"}
    )
    assert parsed(record)["Subject"] == "Join Blue <b>"


async def test_list_headers_only_on_list_mail(hub):
    """unsubscribe: its own link; a list_mail action: a fresh unsubscribe link
    for the same subject; transactional mail: none."""
    mailer, registry, _ = hub
    record = await mailer.send("unsubscribe", to="a@example.org", subject="u1")
    own = parsed(record)
    # On the wire as it is: one line, no RFC 2047 encoded words.
    raw = f"\r\nList-Unsubscribe: {own['List-Unsubscribe']}\r\n".encode()
    assert raw in record.message.body
    assert b"=?utf-8?" not in record.message.body
    assert own["List-Unsubscribe"].startswith(f"<{BASE}/a/")
    assert own["List-Unsubscribe"].strip("<>") in own.get_body(("plain",)).get_content()
    digest = parsed(await mailer.send("digest", to="a@example.org", subject="u2"))
    target = digest["List-Unsubscribe"].strip("<>")
    assert target not in digest.get_body(("plain",)).get_content()
    claims = registry.verify(target.rsplit("/", 1)[1], action="unsubscribe")
    assert claims.subject == "u2"
    assert digest["List-Id"] == "<digest.acme.test>"
    with pytest.raises(InvalidArgumentError) as raised:
        await mailer.send(
            "unsubscribe", to="a@example.org", subject="u", data={"x": "y" * 900}
        )
    assert raised.value.field == "data"
    reset = parsed(await mailer.send("password-reset", to="a@example.org", subject="u"))
    assert "List-Unsubscribe" not in reset
    assert "List-Id" not in reset


def test_list_mail_without_a_one_click_unsubscribe_action_stops_start_up(
    store, clock, issuer
):
    """Its List-Unsubscribe would have no link to carry."""
    actions = tuple(a for a in DEFAULT_ACTIONS if a.name != "unsubscribe")
    mailer, _, _ = make_hub(store, clock, issuer, actions=(*actions, DIGEST))
    with pytest.raises(ConfigurationError, match="digest"):
        mailer.check()


async def test_only_mail_ids_are_found(hub, store, clock):
    """A webhook message, an unknown id and an overlong id are not mail."""
    mailer, _, _ = hub
    hook = Message(
        message_id="em_hook",
        channel="webhook",
        kind="x.y",
        body=b"{}",
        created_at=clock.now(),
    )
    await store.outbox.enqueue(hook, ["ep_1"], due_at=clock.now())
    for mail_id in ("em_hook", "em_unknown", "msg_1", "em_" + "x" * 80):
        with pytest.raises(NotFoundError):
            await mailer.message(mail_id)
    assert await mailer.recipient("hook") is None


async def test_renewal_by_mail_goes_where_the_expired_link_went(hub, clock):
    """Only a mailed link renews by mail, to the same address, as a new mail."""
    mailer, registry, _ = hub
    first = await mailer.send("email-confirm", to="ada@example.org", subject="u")
    jti = first.message.message_id.removeprefix("em_")
    renewal = mailer.renewal
    assert await renewal.renews(jti)
    assert not await renewal.renews("never-mailed")
    link = await registry.mint("email-confirm", subject="u")
    replacing = type(link)(
        url=link.url, token=link.token, claims=link.claims, replaces=jti
    )
    await renewal(replacing)
    again = await mailer.message("em_" + link.claims.token_id)
    assert again.deliveries[0].destination == "ada@example.org"
    orphan = type(link)(
        url=link.url, token=link.token, claims=link.claims, replaces="never-mailed"
    )
    with pytest.raises(NotRenewableError):
        await renewal(orphan)


def write_key(path, key):
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return path


def test_the_dkim_signer_signs_what_dkimpy_verifies_and_hides_its_key(tmp_path):
    """RSA 2048: the signature verifies against the published key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = DkimSigner(
        selector="s1", domain="acme.test", key_path=write_key(tmp_path / "k", key)
    )
    message = b"From: a@acme.test\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    signed = signer.sign(message)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    assert repr(signer) == "DkimSigner('s1', 'acme.test')"
    assert "PRIVATE" not in repr(signer)


@pytest.mark.parametrize(
    "fault", ["missing", "garbage", "small", "ec", "locked", "readable"]
)
def test_an_unusable_dkim_key_is_a_configuration_error(tmp_path, fault):
    """Missing, not PEM, RSA under 2048 bits, another kind, encrypted."""
    path = tmp_path / "key.pem"
    if fault == "garbage":
        path.write_text("not a key")
    elif fault == "small":
        write_key(path, rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 - on purpose
    elif fault == "ec":
        write_key(path, ec.generate_private_key(ec.SECP256R1()))
    elif fault == "readable":
        write_key(path, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        path.chmod(0o644)
    elif fault == "locked":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pw"),
            )
        )
    if fault not in ("missing", "readable"):
        path.chmod(0o600)  # each fault alone
    with pytest.raises(ConfigurationError, match="DKIM key") as raised:
        DkimSigner(selector="s", domain="acme.test", key_path=path)
    assert ("chmod 600" in str(raised.value)) == (fault == "readable")


def test_mail_settings_are_validated(tmp_path):
    """DKIM is all or nothing; From may carry a name; list_mail in the file."""
    with pytest.raises(ConfigurationError, match="DKIM"):
        Settings.from_env({"ACTIONLINKS_DKIM_SELECTOR": "s1"}, cwd=tmp_path)
    for bad in ("no-at-sign", "Ada <a@b.example", "a@b.example\nBcc: x@y.z"):
        with pytest.raises(ConfigurationError, match="smtp_from"):
            Settings.from_env({"ACTIONLINKS_SMTP_FROM": bad}, cwd=tmp_path)
    (tmp_path / "actionlinks.toml").write_text(
        '[actions.news]\nttl = "7d"\nlist_mail = true\n'
    )
    settings = Settings.from_env(
        {
            "ACTIONLINKS_SMTP_FROM": '"Acme Links" <links@acme.test>',
            "ACTIONLINKS_DKIM_SELECTOR": "s1",
            "ACTIONLINKS_DKIM_DOMAIN": "acme.test",
            "ACTIONLINKS_DKIM_PRIVATE_KEY": "dkim.pem",
        },
        cwd=tmp_path,
    )
    assert settings.dkim_key_path == tmp_path / "dkim.pem"
    assert {a.name: a.list_mail for a in settings.actions}["news"] is True
    assert {a.name: a.list_mail for a in settings.actions}["unsubscribe"] is True
    assert {a.name: a.list_mail for a in settings.actions}["invite"] is False
    (tmp_path / "actionlinks.toml").write_text("[actions.invite]\nlist_mail = 1\n")
    with pytest.raises(ConfigurationError, match="list_mail"):
        Settings.from_env({}, cwd=tmp_path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("links@acme.test", ("", "links@acme.test")),
        ("Acme <links@acme.test>", ("Acme", "links@acme.test")),
        ('"Acme, Inc" <links@acme.test>', ("Acme, Inc", "links@acme.test")),
    ],
)
def test_a_mailbox_is_an_address_with_an_optional_name(value, expected):
    assert parse_mailbox(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "Acme <links@acme.test> x",
        "A<b <links@acme.test>",
        "Ac\r\nme <a@b.c>",
        "Acme =?utf-8?q?=0D=0ABcc:_x@y.z?= <links@acme.test>",
    ],
)
def test_a_malformed_mailbox_is_refused(value):
    with pytest.raises(InvalidArgumentError):
        parse_mailbox(value)


def test_a_broken_mail_template_in_the_home_stops_the_service(tmp_path, clock):
    """A template that does not render is found when the service is built,
    naming the action, not when the first mail is due."""
    settings = Settings(home=tmp_path, base_url=BASE, issuer=BASE)
    initialize(settings, clock=clock)
    folder = tmp_path / "templates" / "email" / "magic-signin"
    folder.mkdir(parents=True)
    (folder / "body.txt").write_text("{{ url }} {% if %}")
    with pytest.raises(ConfigurationError, match="magic-signin"):
        Service(settings, clock=clock, store=MemoryStore(clock=clock))


async def test_mail_is_listed_apart_from_webhooks_and_resent_under_its_id(
    hub, store, clock
):
    """The mail listing shows mail only, pages by a mail's id, and resend makes
    a delivered mail due again with its attempts kept."""
    mailer, _, woken = hub
    hook = Message(
        message_id="msg_1",
        channel="webhook",
        kind="x.y",
        body=b"{}",
        created_at=clock.now(),
    )
    await store.outbox.enqueue(hook, ["ep_1"], due_at=clock.now())
    first = await mailer.send("invite", to="a@example.org", subject="u1")
    second = await mailer.send("invite", to="b@example.org", subject="u2")
    listed = await mailer.messages()
    assert [r.message.message_id for r in listed] == [
        second.message.message_id,
        first.message.message_id,
    ]
    page = await mailer.messages(before=second.message.message_id)
    assert [r.message.message_id for r in page] == [first.message.message_id]
    with pytest.raises(InvalidArgumentError):
        await mailer.messages(before="msg_1")
    with pytest.raises(NotFoundError):
        await mailer.resend("msg_1")
    woken.clear()
    again = await mailer.resend(first.message.message_id)
    assert again.deliveries[0].state == "pending"
    assert again.deliveries[0].next_attempt_at == clock.now()
    assert woken == [1]


@pytest.mark.parametrize(
    "title",
    [
        "=?utf-8?q?Weekly=0D=0AReply-To:_attacker@evil.example=0D=0A?=",
        "=?utf-8?b?V2Vla2x5DQpCY2M6IGV2ZUBldmlsLmV4YW1wbGU=?=",
        "😀=??b?0Autf8?=",
        "Hi\x00there\x1b[31m\x07",
    ],
)
async def test_no_data_can_add_a_header_or_a_control_code_to_the_subject(
    store, clock, issuer, tmp_path, title
):
    """RFC 2047 encoded words in data are not decoded into a header break
    (CPython before 3.13 did, CVE-2024-6923); control codes are dropped; the
    mail keeps exactly its own headers and is stored."""
    folder = tmp_path / "email" / "invite"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("News: {{ data.title }}")
    mailer, _, _ = make_hub(store, clock, issuer, overrides=tmp_path)
    record = await mailer.send(
        "invite", to="a@example.org", subject="u", data={"title": title}
    )
    head = record.message.body.split(b"\r\n\r\n", 1)[0]
    names = [line.split(b":", 1)[0] for line in head.split(b"\r\n") if line[:1] != b" "]
    assert sorted(names) == sorted(
        [
            b"From",
            b"To",
            b"Reply-To",
            b"Subject",
            b"Date",
            b"Message-ID",
            b"MIME-Version",
            b"Content-Type",
        ]
    )
    subject = parsed(record)["Subject"]
    assert subject.startswith("News: ")
    assert not any(ord(c) < 32 for c in subject)


async def test_a_mail_that_cannot_be_written_revokes_the_link_it_minted(
    hub, store, monkeypatch
):
    """The link minted for a mail that then fails to be written is revoked:
    no working link exists without its mail."""
    import actionlinks.mail.hub as hub_module

    mailer, _, _ = hub
    minted = []
    mint = ActionRegistry.mint

    async def keep(self, *args, **kwargs):
        link = await mint(self, *args, **kwargs)
        minted.append(link)
        return link

    def refuse(message):
        raise InvalidArgumentError("cannot be written", field="data")

    monkeypatch.setattr(ActionRegistry, "mint", keep)
    monkeypatch.setattr(hub_module, "to_bytes", refuse)
    with pytest.raises(InvalidArgumentError):
        await mailer.send("invite", to="a@example.org", subject="u")
    [link] = minted
    status = await store.links.status(link.claims.token_id)
    assert status.state == "revoked"
    assert await mailer.messages() == []


async def test_a_mailed_link_stays_renewable_after_the_outbox_retention(
    tmp_path, clock
):
    """An invite for 30 days, delivered: 31 days on (a day after it expired)
    the mail worker's purge keeps the mail, so renewal still knows where to
    send a new link; the webhook retention would have forgotten it."""
    settings = Settings(home=tmp_path, base_url=BASE, issuer=BASE)
    initialize(settings, clock=clock)
    store = MemoryStore(clock=clock)
    service = Service(settings, clock=clock, store=store, log_warnings=False)
    sent = await service.mail.send(
        "invite", to="a@example.org", subject="u", ttl=timedelta(days=30)
    )
    [delivery] = await store.outbox.claim(
        channel="mail",
        holder="w",
        limit=1,
        per_destination=1,
        skip=(),
        lease=timedelta(seconds=20),
    )
    await store.outbox.record(
        delivery.delivery_id,
        holder="w",
        attempt=Attempt(at=clock.now(), latency=timedelta(0), status=250),
        state="delivered",
        next_attempt_at=None,
    )
    clock.advance(timedelta(days=31))
    await service._mail_worker._purge_when_due()
    jti = sent.message.message_id.removeprefix("em_")
    assert await service.mail.renewal.renews(jti)


async def test_a_mail_whose_link_is_dead_is_not_resent(hub, clock):
    """Revoked, or expired: resending would deliver a dead link; 409
    link_unusable, the mail left as it was."""
    mailer, registry, _ = hub
    revoked = await mailer.send("invite", to="a@example.org", subject="u1")
    await registry.revoke(revoked.message.message_id.removeprefix("em_"))
    expiring = await mailer.send(
        "invite", to="b@example.org", subject="u2", ttl=timedelta(hours=1)
    )
    clock.advance(timedelta(hours=2))
    for record, state in ((revoked, "revoked"), (expiring, "expired")):
        with pytest.raises(ConflictError, match=state) as raised:
            await mailer.resend(record.message.message_id)
        assert raised.value.code == "link_unusable"
    live = await mailer.send("invite", to="c@example.org", subject="u3")
    assert (await mailer.resend(live.message.message_id)).state == "pending"


@pytest.mark.parametrize(
    ("part", "text", "said"),
    [
        ("body.txt", "Hello, click the button.", "body.txt must put"),
        ("body.txt", "Your link: {{ url }}", "body.txt must put"),
        ("body.html", "<p>Hello</p>", "body.html must link"),
    ],
)
def test_an_override_that_leaves_the_link_out_stops_start_up(
    store, clock, issuer, tmp_path, part, text, said
):
    """A mail without its link, or with the link inside a sentence of the text
    part, is found at start."""
    folder = tmp_path / "email" / "invite"
    folder.mkdir(parents=True)
    (folder / part).write_text(text)
    mailer, _, _ = make_hub(store, clock, issuer, overrides=tmp_path)
    with pytest.raises(ConfigurationError, match=said):
        mailer.check()


@pytest.mark.parametrize(
    "subject",
    [
        "{% if data.count > 1 %}{{ data.count }} invites{% else %}An invite{% endif %}",
        "Invite #{{ data.count + 1 }}",
        'Pay {{ "%.2f"|format(data.amount) }}',
    ],
)
async def test_templates_computing_with_data_pass_the_start_up_check(
    store, clock, issuer, tmp_path, subject
):
    """Comparisons, arithmetic and formats on data do not stop start-up; a
    request with the data renders them."""
    folder = tmp_path / "email" / "invite"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text(subject)
    mailer, _, _ = make_hub(store, clock, issuer, overrides=tmp_path)
    mailer.check()
    record = await mailer.send(
        "invite", to="a@example.org", subject="u", data={"count": 3, "amount": 2.5}
    )
    assert parsed(record)["Subject"] in ("3 invites", "Invite #4", "Pay 2.50")


async def test_a_template_that_needs_real_data_is_checked_for_its_link_per_request(
    store, clock, issuer, tmp_path, monkeypatch
):
    """Code the sample data cannot run (range of it) is checked with each
    request: a mail without its link is refused and no link is left."""
    folder = tmp_path / "email" / "invite"
    folder.mkdir(parents=True)
    (folder / "body.txt").write_text("{% for i in range(data.n) %}hi {% endfor %}")
    mailer, _, _ = make_hub(store, clock, issuer, overrides=tmp_path)
    mailer.check()
    minted = []
    mint = ActionRegistry.mint

    async def keep(self, *args, **kwargs):
        minted.append(await mint(self, *args, **kwargs))
        return minted[-1]

    monkeypatch.setattr(ActionRegistry, "mint", keep)
    with pytest.raises(ConfigurationError, match=r"body.txt must put \{\{ url \}\}"):
        await mailer.send("invite", to="a@example.org", subject="u", data={"n": 2})
    assert await mailer.messages() == []
    [link] = minted
    assert (await store.links.status(link.claims.token_id)).state == "revoked"
