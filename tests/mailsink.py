"""A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every mail it takes.

``MailSink`` answers as scripted (``replies``: ``("RCPT", "451 …")`` or
``("DATA", "550 …")``, used in order), counts the sessions (``EHLO``), and may
ask for a login, offer STARTTLS or speak TLS from the start. It can be stopped
and started again on the same port (a server down, then back).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from servers import free_port

from actionlinks.clock import SystemClock

if TYPE_CHECKING:
    from email.message import EmailMessage
    from pathlib import Path


@dataclass(frozen=True)
class Received:
    """One mail as the server took it."""

    sender: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class MailSink:
    """See the module's text."""

    replies: list[tuple[str, str]] = field(default_factory=list)
    login: tuple[str, str] | None = None
    tls: str = "none"  # "none", "starttls" or "tls"
    certificate: Path | None = None
    key: Path | None = None
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    sessions: int = 0
    hold: float = 0.0  # seconds between taking a mail and answering 250
    refused_logins: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Any = None

    # --- aiosmtpd handler hooks (run in the server's thread) -------------------

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        session.host_name = hostname
        with self._lock:
            self.sessions += 1
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        scripted = self._scripted("MAIL")
        if scripted:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        scripted = self._scripted("RCPT")
        if scripted:
            return scripted
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        scripted = self._scripted("DATA")
        if scripted:
            return scripted
        with self._lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
            )
        await asyncio.sleep(self.hold)
        return "250 2.0.0 OK queued"

    def _scripted(self, stage: str) -> str | None:
        with self._lock:
            if self.replies and self.replies[0][0] == stage:
                return self.replies.pop(0)[1]
        return None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        wanted = self.login
        given = (auth_data.login.decode(), auth_data.password.decode())
        if wanted is not None and given == wanted:
            return AuthResult(success=True)
        with self._lock:
            self.refused_logins += 1
        return AuthResult(success=False, handled=False)

    # --- life ---------------------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.certificate), str(self.key))
        return context

    def start(self) -> Self:
        options: dict[str, Any] = {}
        if self.login is not None:
            options.update(
                authenticator=self._authenticate,
                # aiosmtpd counts only STARTTLS as TLS; implicit TLS is too.
                auth_require_tls=self.tls == "starttls",
            )
        if self.tls == "starttls":
            options.update(tls_context=self._context(), require_starttls=True)
        elif self.tls == "tls":
            options.update(ssl_context=self._context())
        self._controller = Controller(
            self, hostname="127.0.0.1", port=self.port, ready_timeout=20, **options
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what arrived ---------------------------------------------------------------

    def wait_for(self, count: int, seconds: float = 30) -> list[Received]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.received)} mails arrived, not {count}")


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = SystemClock().now()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
