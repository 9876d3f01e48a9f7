"""``actionlinks mail …``: send an action's mail, see what became of it.

``mail send`` mints the link and stores its mail in the database (the running
service's worker sends it within a second); ``mail show`` prints its state
and every attempt. Neither prints the link: it goes to the inbox only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from actionlinks.cli_webhooks import delivery_lines
from actionlinks.clock import format_instant
from actionlinks.mail.hub import headers_of
from actionlinks.outbox.store import MAX_LISTED
from actionlinks.web.api_mail import mail_json

if TYPE_CHECKING:
    from actionlinks.outbox.model import Attempt, MessageRecord
    from actionlinks.service import Service


def add_parser(
    commands: argparse._SubParsersAction[Any],
    json_object: Any,  # noqa: ANN401 - the CLI's --data parser
    duration: Any,  # noqa: ANN401 - the CLI's --ttl parser
) -> None:
    """Add ``mail`` and its subcommands to ``commands``."""
    mail = commands.add_parser("mail", help="send an action's mail, see its attempts")
    sub = mail.add_subparsers(dest="mail_command", required=True)
    send = sub.add_parser("send", help="mint a link and send its mail")
    send.add_argument("action", metavar="ACTION")
    send.add_argument("--to", required=True, metavar="ADDRESS", help="one address")
    send.add_argument("--sub", required=True, metavar="SUBJECT", help="who it is for")
    send.add_argument(
        "--ttl", type=duration, help="lifetime, e.g. 15m (default: the action's)"
    )
    send.add_argument("--data", type=json_object, help="app data, a JSON object")
    send.add_argument("--json", action="store_true", help="print the API's JSON")
    show = sub.add_parser("show", help="a mail's state and every attempt")
    show.add_argument("mail_id", metavar="MAIL_ID")
    show.add_argument("--json", action="store_true")
    listing = sub.add_parser("list", help="mail newest first (--state failed)")
    listing.add_argument("--state", choices=("pending", "delivered", "failed"))
    listing.add_argument("--limit", type=_limit, default=20, help="1-100 (20)")
    listing.add_argument("--json", action="store_true")
    resend = sub.add_parser("resend", help="send a mail again now (same link)")
    resend.add_argument("mail_id", metavar="MAIL_ID")
    resend.add_argument("--json", action="store_true")


def _limit(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LISTED:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_LISTED}"
        )
    return int(text)


def _lines(record: MessageRecord) -> list[str]:
    message = record.message
    subject = headers_of(message)["subject"]
    accepted = format_instant(message.created_at)
    return [
        (
            f"{message.message_id} {message.kind} {subject!r}: {record.state} "
            f"(accepted {accepted})"
        ),
        *delivery_lines(record, _answer),
    ]


def _answer(attempt: Attempt) -> str:
    reply = attempt.response or attempt.error or ""
    return reply if attempt.status is None else f"{attempt.status} {reply}"


async def run_mail(service: Service, args: argparse.Namespace) -> int:
    """Run one ``mail`` subcommand."""
    if args.mail_command == "send":
        return await _send(service, args)
    if args.mail_command == "list":
        return await _list(service, args)
    if args.mail_command == "resend":
        record = await service.mail.resend(args.mail_id)
        said = f"{args.mail_id}: 'actionlinks serve' sends it again, same link"
    else:
        record = await service.mail.message(args.mail_id)
        said = "\n".join(_lines(record))
    if args.json:
        full = args.mail_command == "show"
        print(json.dumps(mail_json(record, full=full), indent=2, sort_keys=True))
    else:
        print(said)
    return 0


async def _send(service: Service, args: argparse.Namespace) -> int:
    record = await service.mail.send(
        args.action, to=args.to, subject=args.sub, data=args.data, ttl=args.ttl
    )
    if "smtp_from" not in service.settings.configured:
        print(
            f"note: the mail is from {service.settings.smtp_from}: set smtp_from "
            "in actionlinks.toml, which the service and this command both read",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(mail_json(record, full=False), indent=2, sort_keys=True))
    else:
        print(
            f"{record.message.message_id}: stored for {args.to}; "
            "'actionlinks serve' sends it (within a second while it runs)"
        )
    return 0


async def _list(service: Service, args: argparse.Namespace) -> int:
    found = await service.mail.messages(state=args.state, limit=args.limit)
    if args.json:
        print(json.dumps([mail_json(r, full=False) for r in found], indent=2))
        return 0
    for record in found:
        shown = mail_json(record, full=False)
        print(
            f"{shown['id']}  {shown['action']}  {shown['to']}  {shown['state']}  "
            f"{shown['created_at']}"
        )
    if not found:
        print("no mail" + (f" in state {args.state}" if args.state else ""))
    return 0
