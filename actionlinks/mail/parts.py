"""The mail side of a service, built from its settings: hub, mailer and worker.

The mailer keeps the SMTP connections; the worker (the outbox's, on the mail
channel) claims no more mail than there are connections, so a claimed mail is
being sent, never waiting while another process could send it; mail is kept
while its link may still be renewed (to the same address).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from actionlinks.mail.delivery import CHANNEL, MailDeliverer
from actionlinks.mail.dkim import DkimSigner
from actionlinks.mail.hub import MailHub
from actionlinks.mail.message import parse_mailbox
from actionlinks.mail.smtp import Mailer, SmtpServer
from actionlinks.mail.templates import MailTemplates
from actionlinks.outbox import OutboxWorker, RetryPolicy
from actionlinks.outbox.worker import RETENTION
from actionlinks.registry import RENEWAL_WINDOW

if TYPE_CHECKING:
    from actionlinks.clock import Clock
    from actionlinks.registry import ActionRegistry
    from actionlinks.settings import Settings
    from actionlinks.stores import Store


@dataclass(frozen=True, slots=True)
class MailParts:
    """What sends a service's mail."""

    hub: MailHub
    mailer: Mailer
    worker: OutboxWorker

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        store: Store,
        registry: ActionRegistry,
        clock: Clock,
    ) -> MailParts:
        """Build them; nothing connects.

        Raises:
            ConfigurationError: a login without TLS to another host, an
                unusable DKIM key.
        """
        connections = settings.smtp_connections
        mailer = Mailer(SmtpServer.from_settings(settings), connections=connections)
        policy = RetryPolicy(settings.mail_retry_schedule)
        longest = max(a.purpose.max_ttl for a in registry.actions.values())
        worker = OutboxWorker(
            store.outbox,
            MailDeliverer(
                mailer=mailer, sender=parse_mailbox(settings.smtp_from)[1], clock=clock
            ),
            channel=CHANNEL,
            clock=clock,
            policy=policy,
            concurrency=connections,
            per_destination=connections,
            retention=max(RETENTION, longest + RENEWAL_WINDOW + timedelta(days=1)),
        )
        hub = MailHub(
            registry=registry,
            outbox=store.outbox,
            templates=MailTemplates(settings.home / "templates"),
            sender=settings.smtp_from,
            reply_to=settings.mail_reply_to,
            clock=clock,
            policy=policy,
            dkim=_dkim_signer(settings),
            wake=worker.wake,
            links=store.links,
        )
        return cls(hub=hub, mailer=mailer, worker=worker)


def _dkim_signer(settings: Settings) -> DkimSigner | None:
    key = settings.dkim_key_path
    if settings.dkim_selector is None or settings.dkim_domain is None or key is None:
        return None
    return DkimSigner(
        selector=settings.dkim_selector, domain=settings.dkim_domain, key_path=key
    )
