"""One mail as it is sent: headers set, parts in ``multipart/alternative``.

``From``, ``To``, ``Subject``, ``Date`` and ``Message-ID`` are always set,
``Reply-To`` when given, and extra headers (``List-Unsubscribe``) where the
caller adds them. Addresses are checked before anything is built: a line
break in one could otherwise start a header of its own.
"""

from __future__ import annotations

import email.policy
import re
import secrets
import unicodedata
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING

from actionlinks.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from actionlinks.mail.templates import RenderedMail

MAX_LINE = 998
"""The longest line of a message (RFC 5322), without its CRLF."""
POLICY = email.policy.SMTP.clone(max_line_length=MAX_LINE)
"""CRLF line ends; headers folded only past 998 octets: a long header with no
space in it (``List-Unsubscribe: <https://…>``) would otherwise be folded into
RFC 2047 encoded words, which no mail provider reads as a URL."""
_WIRE_LINES = re.compile(r"\r\n|\r|\n")
_NOT_7BIT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control codes 7bit text may not carry (RFC 2045); CR, LF and TAB may."""
_LINE_BREAKS = frozenset("\r\n\t\v\f\x85\u2028\u2029")
MAX_ADDRESS = 254
MAX_LOCAL_PART = 64
"""The longest local part (RFC 5321)."""
_ATOM = r"[A-Za-z0-9#$&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+[A-Za-z](?:[A-Za-z0-9-]{{0,61}}[A-Za-z0-9])?")
"""The longest address (RFC 5321's path limit, less the brackets)."""


def check_address(value: object, *, field: str = "to") -> str:
    """``value`` if it is one plain ``local@domain`` address.

    The local part is a dot-atom without ``%`` or ``!`` (source routing
    through the relay) or anything like an RFC 2047 encoded word; the domain
    is a host name with a dot (or ``localhost``), never an address literal.

    Raises:
        InvalidArgumentError: anything else (a display name, a list, a line
            break, a quoted local part, an IP address as the domain).
    """
    refused = InvalidArgumentError(f"'{field}' must be one e-mail address", field=field)
    if not isinstance(value, str) or not 3 <= len(value) <= MAX_ADDRESS:
        raise refused
    local, at, domain = value.rpartition("@")
    if (
        not at
        or len(local) > MAX_LOCAL_PART
        or not _LOCAL_PART.fullmatch(local)
        or "=?" in local
        or not (_DOMAIN.fullmatch(domain) or domain == "localhost")
    ):
        raise refused
    try:
        Address(addr_spec=value)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise refused from exc
    return value


def parse_mailbox(value: str, *, field: str = "from") -> tuple[str, str]:
    """The display name and address of ``address`` or ``Name <address>``.

    Raises:
        InvalidArgumentError: anything else.
    """
    name, bracket, rest = value.partition("<")
    if not bracket:
        return "", check_address(value.strip(), field=field)
    address, closing, tail = rest.partition(">")
    name = name.strip().strip('"').strip()
    if (
        not closing
        or tail.strip()
        or "=?" in name  # an encoded word: decoded into anything while written
        or any(c in '"\\<>' or ord(c) < 32 for c in name)
    ):
        raise InvalidArgumentError(f"'{field}' must be one e-mail address", field=field)
    return name, check_address(address.strip(), field=field)


def compose(  # noqa: PLR0913 - a mail's parts, each named
    mail: RenderedMail,
    *,
    sender: str,
    to: str,
    now: datetime,
    reply_to: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """The message for ``to``: text and HTML alternatives, headers set.

    Raises:
        InvalidArgumentError: a malformed address.
    """
    check_address(to)
    name, address = parse_mailbox(sender)
    message = EmailMessage(policy=POLICY)
    message["From"] = Address(display_name=name, addr_spec=address)
    message["To"] = to
    if reply_to is not None:
        reply_name, reply_address = parse_mailbox(reply_to, field="reply_to")
        message["Reply-To"] = Address(display_name=reply_name, addr_spec=reply_address)
    message["Subject"] = header_text(mail.subject)
    message["Date"] = format_datetime(now)
    # From secrets, not random: a Message-ID or boundary that can be predicted
    # lets data close a part early and add one of its own.
    message["Message-ID"] = f"<{secrets.token_hex(16)}@{address.rpartition('@')[2]}>"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(mail.text, cte=transfer_encoding(mail.text))
    message.add_alternative(mail.html, subtype="html", cte=transfer_encoding(mail.html))
    for part in message.iter_parts():
        del part["MIME-Version"]  # the message's own is the one that counts
    boundary = f"=_{secrets.token_hex(16)}"  # "=_" never starts a 7bit or QP line
    if boundary in mail.text or boundary in mail.html:  # pragma: no cover - 2**-128
        raise InvalidArgumentError("the mail's parts hold its boundary", field="data")
    message.set_boundary(boundary)
    return message


def header_text(text: str) -> str:
    """``text`` made safe as an unstructured header: one line, inert.

    Control codes and line separators go. An RFC 2047 encoded word in the
    text (``=?utf-8?q?…?=``) is broken by a word joiner so that it stays text:
    CPython before 3.13 decoded such words while writing the header, CR/LF
    included, which let data start headers of its own (CVE-2024-6923).
    """
    kept = "".join(
        " " if c in _LINE_BREAKS else c
        for c in text
        if c in _LINE_BREAKS or unicodedata.category(c) != "Cc"
    )
    return kept.replace("=?", "=\u2060?")


def to_bytes(message: EmailMessage) -> bytes:
    """The message as sent, its header block checked to hold what was set.

    Raises:
        InvalidArgumentError: it cannot be written, or writing it would add,
            drop or split a header (``field`` is ``data``, whence the text came).
    """
    try:
        raw = message.as_bytes()
    except (UnicodeError, ValueError, TypeError) as exc:
        raise InvalidArgumentError(
            "the mail cannot be written from this data", field="data"
        ) from exc
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    written = sorted(
        line.split(b":", 1)[0].decode("ascii", "replace").lower()
        for line in head
        if line[:1] not in (b" ", b"\t")
    )
    if written != sorted(name.lower() for name in message.keys()):  # noqa: SIM118 - headers, not a dict
        raise InvalidArgumentError(
            "the mail's headers would not be the ones set; check the data",
            field="data",
        )
    return raw


def transfer_encoding(text: str) -> str:
    """``7bit`` when every line may be sent as it is, else ``quoted-printable``.

    Sent as it is, ASCII text keeps the link whole in the raw message too (a
    log, a terminal, a client that shows the source). Text with other
    characters is quoted-printable, which any server takes (8bit needs the
    server's ``8BITMIME``); mail clients decode it, link and all.
    """
    lines = _WIRE_LINES.split(text)  # what ends a line on the wire, no more
    if (
        text.isascii()
        and not _NOT_7BIT.search(text)
        and all(len(line) <= MAX_LINE for line in lines)
    ):
        return "7bit"
    return "quoted-printable"
