"""One mail as it is sent: headers set, parts in ``multipart/alternative``.

``From``, ``To``, ``Subject``, ``Date`` and ``Message-ID`` are always set,
``Reply-To`` when given, and extra headers (``List-Unsubscribe``) where the
caller adds them. Addresses are checked before anything is built: a line
break in one could otherwise start a header of its own.
"""

from __future__ import annotations

from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from actionlinks.errors import InvalidArgumentError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

    from actionlinks.mail.templates import RenderedMail

MAX_ADDRESS = 254
"""The longest address (RFC 5321's path limit, less the brackets)."""


def check_address(value: object, *, field: str = "to") -> str:
    """``value`` if it is one plain ``local@domain`` address.

    Raises:
        InvalidArgumentError: anything else (a display name, a list, a line
            break, no domain).
    """
    if (
        not isinstance(value, str)
        or not 3 <= len(value) <= MAX_ADDRESS
        or any(c.isspace() or ord(c) < 32 or c in '<>,;"()' for c in value)
    ):
        raise InvalidArgumentError(f"'{field}' must be one e-mail address", field=field)
    try:
        address = Address(addr_spec=value)
    except (ValueError, IndexError, HeaderParseError) as exc:
        raise InvalidArgumentError(
            f"'{field}' must be one e-mail address", field=field
        ) from exc
    domain = address.domain.strip(".")
    if not address.username or ("." not in domain and domain != "localhost"):
        raise InvalidArgumentError(f"'{field}' must be one e-mail address", field=field)
    return value


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
    check_address(sender, field="from")
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if reply_to is not None:
        message["Reply-To"] = check_address(reply_to, field="reply_to")
    message["Subject"] = mail.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message
