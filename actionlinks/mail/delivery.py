"""The outbox's mail attempts: send over SMTP, judge the server's reply.

A mail's destination is its recipient's address; its stored bytes are sent as
they are on every attempt (signed once, with one ``Message-ID``). A 5xx
refusal of the mail fails it for good; everything else is tried again on the
mail schedule.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio

from actionlinks.errors import MailDeliveryError
from actionlinks.outbox.model import Attempt, excerpt
from actionlinks.outbox.worker import AttemptResult

if TYPE_CHECKING:
    from actionlinks.clock import Clock
    from actionlinks.mail.smtp import Mailer
    from actionlinks.outbox.model import Delivery

_log = logging.getLogger("actionlinks.mail")

_LINK_PATH = re.compile(r"/a/[^\s/?#<>\"']+")
_TOKEN = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
CHANNEL = "mail"
"""The outbox channel of mail."""
ACCEPTED = 250
"""The reply code of a mail the server took."""


class MailDeliverer:
    """Makes one attempt at a mail for the outbox worker.

    Args:
        mailer: sends over SMTP.
        sender: the envelope sender (``MAIL FROM``), where bounces go.
        clock: the source of time.
    """

    __slots__ = ("_clock", "_mailer", "_sender")

    def __init__(self, *, mailer: Mailer, sender: str, clock: Clock) -> None:
        """Keep the collaborators."""
        self._mailer = mailer
        self._sender = sender
        self._clock = clock

    def __repr__(self) -> str:
        """Name the deliverer."""
        return f"MailDeliverer({self._mailer!r})"

    async def __call__(self, delivery: Delivery) -> AttemptResult:
        """Attempt ``delivery`` once."""
        at = self._clock.now()
        started = anyio.current_time()
        message_id = delivery.message.message_id
        try:
            reply = await self._mailer.send(
                sender=self._sender,
                recipient=delivery.destination,
                message=delivery.message.body,
            )
        except MailDeliveryError as exc:
            latency = timedelta(seconds=anyio.current_time() - started)
            said = redacted(str(exc))
            if exc.permanent:
                _log.warning("mail %s refused for good: %s", message_id, said)
            else:
                _log.info("mail %s not sent this time: %s", message_id, said)
            attempt = Attempt(
                at=at,
                latency=latency,
                status=exc.reply_code,
                response=excerpt(redacted(exc.reply)),
                error=redacted(str(exc)),
            )
            return AttemptResult(
                attempt=attempt, outcome="failed" if exc.permanent else "retry"
            )
        attempt = Attempt(
            at=at,
            latency=timedelta(seconds=anyio.current_time() - started),
            status=ACCEPTED,
            response=excerpt(redacted(reply)),
        )
        return AttemptResult(attempt=attempt, outcome="delivered")


def redacted(reply: str) -> str:
    """``reply`` with any link token in it replaced by ``…``.

    Content filters quote what they found in a mail (a URL on a block list);
    a link is a bearer token and must not reach the attempts' readers or logs.
    """
    return _TOKEN.sub("…", _LINK_PATH.sub("/a/…", reply))
