"""``actionlinks webhooks …``: endpoints, sending, attempts and redelivery.

The commands work on the database directly (the running service's worker
delivers what they store, within a second); they print what the HTTP API
answers, as text or with ``--json`` as the API's JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from actionlinks.clock import format_instant
from actionlinks.outbox.store import MAX_LISTED
from actionlinks.web.api_webhooks import endpoint_json, message_json
from actionlinks.webhooks.hub import ROTATION_OVERLAP

if TYPE_CHECKING:
    from collections.abc import Callable

    from actionlinks.outbox.model import Attempt, MessageRecord
    from actionlinks.service import Service
    from actionlinks.webhooks.endpoints import EndpointRecord

_STATES = ("pending", "delivered", "failed", "none")


def add_parser(
    commands: argparse._SubParsersAction[Any],
    json_object: Any,  # noqa: ANN401 - the CLI's --data parser
    duration: Any,  # noqa: ANN401 - the CLI's --ttl parser
) -> None:
    """Add ``webhooks`` and its subcommands to ``commands``."""
    webhooks = commands.add_parser(
        "webhooks", help="register endpoints, send messages, see attempts"
    )
    sub = webhooks.add_subparsers(dest="webhooks_command", required=True)

    endpoints = sub.add_parser(
        "endpoints", help="list, add, rotate or disable endpoints"
    )
    endpoint_commands = endpoints.add_subparsers(dest="endpoints_command")
    listing = endpoint_commands.add_parser("list", help="list the endpoints")
    listing.add_argument("--json", action="store_true")
    add = endpoint_commands.add_parser("add", help="register an endpoint")
    add.add_argument("url", metavar="URL")
    add.add_argument(
        "--event-type",
        action="append",
        dest="event_types",
        metavar="TYPE",
        help="receive only this type (repeat; default: every type)",
    )
    add.add_argument(
        "--jwt-header",
        default="authorization",
        metavar="HEADER",
        help="the header carrying the JWT (default: authorization)",
    )
    add.add_argument("--no-jwt", action="store_true", help="send no JWT header")
    add.add_argument("--json", action="store_true")
    for name, text in (
        ("rotate", "give an endpoint a new secret (the old ones sign 24 h more)"),
        ("disable", "disable an endpoint (pending messages fail)"),
        ("enable", "enable a disabled endpoint again"),
    ):
        command = endpoint_commands.add_parser(name, help=text)
        command.add_argument("endpoint_id", metavar="ENDPOINT_ID")
        command.add_argument("--json", action="store_true")
        if name == "rotate":
            command.add_argument(
                "--overlap",
                type=duration,
                default=ROTATION_OVERLAP,
                metavar="DURATION",
                help="how long the old secrets keep signing (default 24h)",
            )

    send = sub.add_parser("send", help="send an event (stored, then delivered)")
    send.add_argument("event_type", metavar="EVENT_TYPE")
    send.add_argument("--payload", type=json_object, default={}, metavar="JSON")
    send.add_argument("--endpoint", metavar="ENDPOINT_ID", help="only to this one")
    send.add_argument("--id", dest="message_id", metavar="ID", help="idempotency id")
    send.add_argument("--json", action="store_true")

    attempts = sub.add_parser("attempts", help="show a message and every attempt")
    attempts.add_argument("message_id", metavar="MESSAGE_ID")
    attempts.add_argument("--json", action="store_true")

    messages = sub.add_parser("messages", help="list messages, newest first")
    messages.add_argument("--state", choices=_STATES, help="e.g. failed: dead letters")
    messages.add_argument("--limit", type=_positive, default=MAX_LISTED, metavar="N")
    messages.add_argument("--json", action="store_true")

    redeliver = sub.add_parser("redeliver", help="deliver a message again (same id)")
    redeliver.add_argument("message_id", metavar="MESSAGE_ID")
    redeliver.add_argument("--endpoint", metavar="ENDPOINT_ID", help="only to this one")
    redeliver.add_argument("--json", action="store_true")


def _positive(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError("must be a whole number from 1")
    return int(text)


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _endpoint_line(record: EndpointRecord) -> str:
    types = (
        "every type" if record.event_types is None else ", ".join(record.event_types)
    )
    state = "" if record.is_enabled else f"  DISABLED ({record.disabled_reason})"
    return f"{record.endpoint_id}  {record.shown_url}  [{types}]{state}"


def delivery_lines(
    record: MessageRecord, answer: Callable[[Attempt], str]
) -> list[str]:
    """Each delivery's state, then each attempt with ``answer(attempt)``."""
    lines = []
    for delivery in record.deliveries:
        due = (
            f", next attempt {format_instant(delivery.next_attempt_at)}"
            if delivery.next_attempt_at is not None
            else ""
        )
        count = (
            "1 attempt" if delivery.attempts == 1 else f"{delivery.attempts} attempts"
        )
        lines.append(f"  to {delivery.destination}: {delivery.state}, {count}{due}")
        lines.extend(
            f"    {format_instant(attempt.at)}  {answer(attempt)}  "
            f"{attempt.latency.total_seconds() * 1000:.0f} ms"
            for attempt in delivery.history
        )
    return lines


def _message_lines(record: MessageRecord) -> list[str]:
    message = record.message
    accepted = format_instant(message.created_at)
    return [
        f"{message.message_id} {message.kind}: {record.state} (accepted {accepted})",
        *delivery_lines(record, lambda a: a.error or f"HTTP {a.status}"),
    ]


class _Progress:
    """A progress line on a terminal's stderr for lists that take a while."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._shown = False

    def update(self, count: int) -> None:
        if sys.stderr.isatty():
            print(f"\r… {count} {self._what}", end="", file=sys.stderr, flush=True)
            self._shown = True

    def done(self) -> None:
        if self._shown:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


async def _list_endpoints(service: Service, args: argparse.Namespace) -> int:
    found = await service.webhooks.endpoints()
    if getattr(args, "json", False):
        _print_json([endpoint_json(e) for e in found])
        return 0
    for record in found:
        print(_endpoint_line(record))
    if not found:
        print("no endpoints; add one with: actionlinks webhooks endpoints add URL")
    return 0


async def _endpoints(service: Service, args: argparse.Namespace) -> int:
    hub = service.webhooks
    command = args.endpoints_command or "list"
    if command == "list":
        return await _list_endpoints(service, args)
    secret = None
    if command == "add":
        record, secret = await hub.add_endpoint(
            args.url,
            event_types=args.event_types,
            jwt_header=None if args.no_jwt else args.jwt_header,
        )
    elif command == "rotate":
        record, secret = await hub.rotate(args.endpoint_id, overlap=args.overlap)
    elif command == "disable":
        record = await hub.disable(args.endpoint_id)
    else:
        record = await hub.enable(args.endpoint_id)
    if args.json:
        shown = endpoint_json(record, full=command == "add")
        if secret is not None:
            shown["secret"] = secret
        _print_json(shown)
        return 0
    print(_endpoint_line(record))
    if secret is not None:
        print(f"secret: {secret}")
        print("  (shown once: give it to the receiver to verify signatures)")
    return 0


async def run_webhooks(service: Service, args: argparse.Namespace) -> int:
    """Run ``actionlinks webhooks …``; the exit code."""
    hub = service.webhooks
    command = args.webhooks_command
    if command == "endpoints":
        return await _endpoints(service, args)
    if command == "messages":
        return await _messages(service, args)
    if command == "send":
        record = await hub.send(
            args.event_type,
            args.payload,
            endpoint_id=args.endpoint,
            message_id=args.message_id,
        )
    elif command == "redeliver":
        record = await hub.redeliver(args.message_id, endpoint_id=args.endpoint)
    else:
        record = await hub.message(args.message_id)
    if args.json:
        _print_json(message_json(record))
    else:
        print("\n".join(_message_lines(record)))
    return 0


async def _messages(service: Service, args: argparse.Namespace) -> int:
    args.limit = max(args.limit, 1)
    found: list[MessageRecord] = []
    progress = _Progress("messages")
    before = None
    while len(found) < args.limit:
        page = await service.webhooks.messages(
            state=args.state,
            limit=min(MAX_LISTED, args.limit - len(found)),
            before=before,
        )
        found += page
        progress.update(len(found))
        if len(page) < MAX_LISTED:
            break
        before = page[-1].message.message_id
    progress.done()
    if args.json:
        _print_json([message_json(r, full=False) for r in found])
        return 0
    for record in found:
        failed = [d.destination for d in record.deliveries if d.state == "failed"]
        note = f" (failed to {', '.join(failed)})" if failed else ""
        print(
            f"{record.message.message_id}  {record.message.kind}  {record.state}  "
            f"{format_instant(record.message.created_at)}{note}"
        )
    if not found:
        print("no messages" + (f" in state {args.state}" if args.state else ""))
    return 0
