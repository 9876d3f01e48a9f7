"""Sending over SMTP (aiosmtplib): a few connections, each reused mail after mail.

A :class:`Mailer` opens at most ``connections`` connections to the server
(implicit TLS, STARTTLS or plain; with a login when a user name is set) and
sends each mail over one that is free, so a burst of mail goes out over
connections already open. A connection left idle for a while is checked with
``NOOP`` before it is used again, and dropped if the server closed it: a mail
is never half-sent on a stale connection. Every failure is a
:class:`~actionlinks.errors.MailDeliveryError` that says whether it is
permanent: a 5xx refusal of the recipient (``RCPT``) or of the content
(``DATA``) is; a 4xx, a timeout, a refused connection, a failed login or TLS
handshake, a refused sender (``MAIL``) or a demand to log in are not: they
are about the service's settings or the server, not the mail, and the mail
goes once they are mended.

The answer to the mail's final dot is awaited for ``FINAL_TIMEOUT`` (ten
minutes, as RFC 5321 §4.5.3.2.6 asks): a server that is slow to take a mail
must not be sent it again because the client gave up first.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiosmtplib
import anyio

from actionlinks.errors import ConfigurationError, MailDeliveryError
from actionlinks.mail.message import parse_mailbox

if TYPE_CHECKING:
    from actionlinks.settings import Secret, Settings, SmtpTls

CONNECTIONS = 4
"""The most connections open to the server at once, by default
(``ACTIONLINKS_SMTP_CONNECTIONS``)."""
TIMEOUT = 30.0
"""Seconds allowed for connecting and for each SMTP command."""
FINAL_TIMEOUT = 600.0
"""Seconds allowed for the answer to the mail's final dot (RFC 5321)."""
CLOSE_TIMEOUT = 2.0
"""Seconds a closing mailer waits for its idle connections' QUIT."""
_LOGIN_NEEDED = frozenset({530, 535, 538})
"""Replies that mean the server wants (another) login, wherever they come."""
IDLE_CHECK = 5.0
"""A connection idle this many seconds is checked (NOOP) before it is used."""
IDLE_CLOSE = 60.0
"""A connection idle this long is closed rather than checked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SmtpServer:
    """Where mail is sent and how.

    Attributes:
        host: the server's name or address.
        port: its port.
        tls: ``none``, ``starttls`` or ``tls`` (implicit TLS).
        username: the login, if the server wants one.
        password: its password (never shown).
        timeout: seconds for the connection and each command.
        local_hostname: the name given in ``EHLO``.
    """

    host: str
    port: int
    tls: SmtpTls = "none"
    username: str | None = None
    password: Secret | None = field(default=None, repr=False)
    timeout: float = TIMEOUT
    local_hostname: str = "localhost"

    def __post_init__(self) -> None:
        """Refuse to send a password in clear text off this machine.

        Raises:
            ConfigurationError: a login without TLS to another host.
        """
        if (
            self.username is not None
            and self.tls == "none"
            and not _is_loopback(self.host)
        ):
            raise ConfigurationError(
                "the SMTP login would cross the network in clear text: set "
                "ACTIONLINKS_SMTP_TLS=starttls (or tls, for port 465)"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpServer:
        """The server the ``ACTIONLINKS_SMTP_*`` settings name."""
        _, sender = parse_mailbox(settings.smtp_from)
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=settings.smtp_password,
            local_hostname=sender.rpartition("@")[2],
        )


@dataclass(slots=True)
class _Connection:
    client: aiosmtplib.SMTP
    idle_since: float


class Mailer:
    """Sends mail to one SMTP server over a few reused connections.

    Args:
        server: the server.
        connections: the most connections open at once.
    """

    __slots__ = ("_connections", "_idle", "_server", "_slots")

    def __init__(self, server: SmtpServer, *, connections: int = CONNECTIONS) -> None:
        """Connect nothing yet: the first mail opens the first connection."""
        self._server = server
        self._connections = connections
        self._idle: list[_Connection] = []
        self._slots: anyio.Semaphore | None = None

    def __repr__(self) -> str:
        """Name the server, never the password."""
        return f"Mailer({self._server.host}:{self._server.port}, {self._server.tls})"

    async def send(self, *, sender: str, recipient: str, message: bytes) -> str:
        """Send ``message`` from ``sender`` (the envelope) to ``recipient``.

        Returns:
            The server's reply to the mail (``250 …``).

        Raises:
            MailDeliveryError: the server did not take it (see the module).
        """
        if self._slots is None:  # made in the event loop
            self._slots = anyio.Semaphore(self._connections)
        async with self._slots:
            connection = await self._take()
            try:
                reply = await _transact(connection.client, sender, recipient, message)
            except aiosmtplib.SMTPResponseException as exc:
                self._keep(connection)  # the envelope was reset: still good
                raise _refused(exc) from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await _close(connection)
                raise _failed("the connection failed during the mail", exc) from exc
            except BaseException:  # cancelled mid-mail: the state is unknown
                connection.client.close()  # no QUIT: its answer could be the 250
                raise
            self._keep(connection)
            return reply

    async def aclose(self) -> None:
        """Say QUIT on every idle connection, all at once, for 2 s at most."""
        idle, self._idle = self._idle, []
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            async with anyio.create_task_group() as tasks:
                for connection in idle:
                    tasks.start_soon(_close, connection)
        for connection in idle:  # those that did not answer in time
            connection.client.close()

    def _keep(self, connection: _Connection) -> None:
        if connection.client.is_connected:
            connection.idle_since = anyio.current_time()
            self._idle.append(connection)

    async def _take(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            idle = anyio.current_time() - connection.idle_since
            if not connection.client.is_connected or idle > IDLE_CLOSE:
                await _close(connection)
                continue
            if idle <= IDLE_CHECK:
                return connection
            try:
                await connection.client.noop()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                await _close(connection)
                continue
            return connection
        return await self._connect()

    async def _connect(self) -> _Connection:
        server = self._server
        client = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            timeout=server.timeout,
            use_tls=server.tls == "tls",
            start_tls=server.tls == "starttls",
            local_hostname=server.local_hostname,
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await _close(_Connection(client, 0.0))
            raise _failed(
                f"cannot connect to {server.host}:{server.port}", exc
            ) from exc
        if server.username is not None:
            password = "" if server.password is None else server.password.reveal()
            try:
                await client.login(server.username, password)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await _close(_Connection(client, 0.0))
                raise _failed("the login failed", exc) from exc
        return _Connection(client, anyio.current_time())


async def _transact(
    client: aiosmtplib.SMTP, sender: str, recipient: str, message: bytes
) -> str:
    """One mail: MAIL, RCPT, DATA; the envelope is reset after a refusal."""
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    options = [f"SIZE={len(message)}"] if client.supports_extension("size") else []
    try:
        await client.mail(sender, options=options)
        await client.rcpt(recipient)
        response = await client.data(message, timeout=FINAL_TIMEOUT)
    except aiosmtplib.SMTPResponseException:
        with anyio.move_on_after(TIMEOUT):
            try:
                await client.rset()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()  # not reusable: dropped by the caller
        raise
    return response.message


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _refused(exc: aiosmtplib.SMTPResponseException) -> MailDeliveryError:
    code = exc.code
    if isinstance(exc, aiosmtplib.SMTPSenderRefused):
        stage, about_mail = "MAIL", False  # the sender, as the settings give it
    elif isinstance(exc, aiosmtplib.SMTPRecipientRefused):
        stage, about_mail = "RCPT", code not in _LOGIN_NEEDED
    elif isinstance(exc, aiosmtplib.SMTPDataError):
        stage, about_mail = "DATA", code not in _LOGIN_NEEDED
    else:  # EHLO
        stage, about_mail = "EHLO", False
    permanent = about_mail and 500 <= code < 600
    if permanent:
        what = "refused the mail"
    elif 500 <= code < 600:
        what = "refused the sender or wants a login (check the SMTP settings)"
    else:
        what = "deferred the mail"
    return MailDeliveryError(
        f"the server {what} at {stage}: {code}",
        reply_code=code,
        reply=exc.message,
        permanent=permanent,
    )


def _failed(what: str, exc: BaseException) -> MailDeliveryError:
    code = getattr(exc, "code", None)
    answered = isinstance(code, int) and code > 0
    reason = getattr(exc, "message", "") or str(exc) or type(exc).__name__
    cause = exc if isinstance(exc, OSError) and exc.strerror else exc.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        reason = cause.strerror  # not aiosmtplib's restatement of host and port
    return MailDeliveryError(
        f"{what}: {reason}",
        reply_code=code if answered else None,
        reply=reason if answered else "",  # a reply is only what the server said
        permanent=False,
    )


async def _close(connection: _Connection) -> None:
    client = connection.client
    if not client.is_connected:
        return
    with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
            return
    if client.is_connected:
        client.close()
