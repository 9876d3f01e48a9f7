"""The ``actionlinks`` command: argument parsing only; the library does the work.

Exit codes: 0 success; 1 a token was rejected; 2 usage or configuration error
(including a port in use or an unknown host for ``serve``); 3 the database is
unavailable. Errors are one line on stderr, never a traceback, and never contain
a token or a secret. A closed stdout (``… | head -c1``) ends the command
silently.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from actionlinks import cli_mail, cli_webhooks
from actionlinks.access import SCOPES
from actionlinks.actions import token_from
from actionlinks.clock import SystemClock, format_instant
from actionlinks.errors import (
    ActionLinksError,
    ConfigurationError,
    LedgerUnavailableError,
    TokenError,
)
from actionlinks.home import change_keys, initialize
from actionlinks.keyfile import load_keyring
from actionlinks.keys import ALGORITHMS, parse_algorithm
from actionlinks.links import status_json
from actionlinks.server import listen, serve_forever
from actionlinks.service import Service
from actionlinks.settings import Settings, parse_duration
from actionlinks.tokens import check_text

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from actionlinks.clock import Clock
    from actionlinks.tokens import ActionClaims

EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports it
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 - names, not a bind


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"actionlinks: error: {message}\n")


def _add_keys_parser(commands: argparse._SubParsersAction[Any]) -> None:
    keys = commands.add_parser("keys", help="list, rotate, retire or export keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    listing = key_commands.add_parser("list", help="list the keys")
    listing.add_argument("--json", action="store_true")
    rotate = key_commands.add_parser("rotate", help="add a new signing key")
    rotate.add_argument("--alg", type=_algorithm, choices=ALGORITHMS, default="HS256")
    rotate.add_argument(
        "--activate-after",
        type=_duration,
        metavar="DURATION",
        help="verify at once, sign only after this (e.g. 60s): every host of a "
        "fleet loads the key before any link carries it",
    )
    retire = key_commands.add_parser("retire", help="remove a verify-only key")
    retire.add_argument("kid", metavar="KID")
    key_commands.add_parser("jwks", help="print the public JWK Set")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="actionlinks",
        description="Signed, single-purpose, one-time action links. "
        "Reads its home directory from ACTIONLINKS_HOME (default: here).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    init = commands.add_parser("init", help="create the config and keys in the home")
    init.add_argument("--base-url", metavar="URL", help="where people reach links")

    mint = commands.add_parser("mint", help="mint a link and print its URL")
    mint.add_argument("action", metavar="ACTION")
    mint.add_argument("--sub", required=True, metavar="SUBJECT")
    mint.add_argument("--ttl", type=_duration, metavar="DURATION", help="e.g. 15m")
    mint.add_argument("--data", type=_json_object, metavar="JSON")
    mint.add_argument("--state", metavar="FINGERPRINT", help="bind to this state")
    mint.add_argument("--alg", type=_algorithm, choices=ALGORITHMS)
    mint.add_argument("--json", action="store_true", help="print one JSON object")

    verify = commands.add_parser("verify", help="check a link without using it")
    verify.add_argument("token", metavar="TOKEN_OR_URL")
    verify.add_argument("--action", metavar="ACTION")
    verify.add_argument("--state", metavar="FINGERPRINT")
    verify.add_argument("--json", action="store_true")

    status = commands.add_parser("status", help="show a link's status by its jti")
    status.add_argument("jti", metavar="JTI")
    status.add_argument("--json", action="store_true")

    commands.add_parser("migrate", help="create or update the database schema")

    revoke = commands.add_parser("revoke", help="revoke a link or a subject's links")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--jti", metavar="TOKEN_ID")
    target.add_argument("--sub", metavar="SUBJECT")
    revoke.add_argument("--action", metavar="ACTION", help="with --sub: only these")

    serve = commands.add_parser("serve", help="run the link service (uvicorn)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)

    tokens = commands.add_parser("tokens", help="issue or revoke API access tokens")
    token_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    issue = token_commands.add_parser("issue", help="issue an access token")
    issue.add_argument(
        "--scope", action="append", required=True, choices=SCOPES, dest="scopes"
    )
    issue.add_argument("--ttl", type=_duration, metavar="DURATION", help="e.g. 90d")
    issue.add_argument("--name", default="api", help="who the token is for")
    issue.add_argument("--json", action="store_true")
    revoke_token = token_commands.add_parser("revoke", help="revoke an access token")
    revoke_token.add_argument("jti", metavar="JTI")

    _add_keys_parser(commands)
    cli_webhooks.add_parser(commands, _json_object, _duration)
    cli_mail.add_parser(commands, _json_object, _duration)
    return parser


def _duration(text: str) -> object:
    try:
        return parse_duration(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _algorithm(text: str) -> str:
    try:
        return parse_algorithm(text)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise argparse.ArgumentTypeError("must be a JSON object") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _claims_json(claims: ActionClaims) -> dict[str, Any]:
    return {
        "action": claims.action,
        "sub": claims.subject,
        "jti": claims.token_id,
        "issued_at": format_instant(claims.issued_at),
        "expires_at": format_instant(claims.expires_at),
        "iss": claims.issuer,
        "kid": claims.key_id,
        "alg": claims.algorithm,
        "data": claims.data,
        "state_bound": claims.is_state_bound,
    }


def _print_json(value: object) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


async def _mint(service: Service, args: argparse.Namespace) -> int:
    link = await service.registry.mint(
        args.action,
        subject=args.sub,
        ttl=args.ttl,
        data=args.data,
        state=args.state,
        algorithm=args.alg,
    )
    if args.json:
        _print_json({"url": link.url, "token": link.token, **_claims_json(link.claims)})
    else:
        print(link.url)
    return 0


async def _verify(service: Service, args: argparse.Namespace) -> int:
    try:
        claims = await service.registry.check(
            token_from(args.token),
            action=args.action,
            state=args.state,
            ignore_state=args.state is None,
        )
    except TokenError as exc:
        if not args.json:
            raise
        _print_json({"valid": False, "error": exc.code, "reason": str(exc)})
        return EXIT_REJECTED
    if args.json:
        _print_json({"valid": True, **_claims_json(claims)})
    else:
        note = (
            " (state not checked)" if claims.is_state_bound and not args.state else ""
        )
        print(
            f"valid: {claims.action} for {claims.subject}, expires "
            f"{format_instant(claims.expires_at)}, jti {claims.token_id}{note}"
        )
    return 0


async def _status(service: Service, args: argparse.Namespace) -> int:
    check_text(args.jti, "the jti", field="jti", limit=64)
    found = await service.links.status(args.jti)
    if found is None:
        raise ConfigurationError(f"no link with jti {args.jti[:64]!r} in this database")
    does = service.describe(found.action)
    if args.json:
        _print_json({**status_json(found), "dispatch": does})
        return 0
    print(f"{found.action} for {found.subject}: {found.state}")
    for label, instant in (
        ("issued", found.issued_at),
        ("expires", found.expires_at),
        ("viewed", found.viewed_at),
        ("used", found.used_at),
        ("revoked", found.revoked_at),
    ):
        if instant is not None:
            print(f"  {label:<8} {format_instant(instant)}")
    for attempts in found.rejected:
        print(
            f"  rejected {attempts.count} times ({attempts.reason}), last "
            f"{format_instant(attempts.last_at)}"
        )
    if does is None:
        print(
            f"  note: {found.action} has no handler, handler_url or redirect: "
            "a use only records that it happened"
        )
    return 0


async def _revoke(service: Service, args: argparse.Namespace) -> int:
    if args.jti is not None:
        if args.action is not None:
            raise ConfigurationError("--action goes with --sub, not --jti")
        await service.registry.revoke(args.jti)  # checks the id first
        known = await service.links.status(args.jti) is not None
        note = "" if known else " (no link with this id is recorded here)"
        print(f"revoked link {args.jti}{note}")
    else:
        await service.registry.revoke_subject(args.sub, action=args.action)
        scope = f"{args.action} link" if args.action else "link"
        print(f"revoked every {scope} of {args.sub} issued before now")
    return 0


def _keys(settings: Settings, clock: Clock, args: argparse.Namespace) -> int:
    ring = load_keyring(settings.keys_path)
    if args.keys_command == "list":
        rows = [
            {
                "kid": key.key_id,
                "alg": key.algorithm,
                "status": key.status,
                "created": format_instant(key.created_at),
                "signs_from": None
                if key.signs_from is None
                else format_instant(key.signs_from),
            }
            for key in ring.settled(clock.now())
        ]
        if args.json:
            _print_json(rows)
        else:
            for row in rows:
                since = f"  signs from {row['signs_from']}" if row["signs_from"] else ""
                print(
                    f"{row['kid']}  {row['alg']:<5}  {row['status']:<8}  "
                    f"{row['created']}{since}"
                )
    elif args.keys_command == "rotate":
        at = clock.now()
        after = args.activate_after
        rotated = change_keys(
            settings,
            lambda now: now.rotated(
                args.alg,
                created_at=at,
                signs_from=None if after is None else at + after,
            ),
        )
        new = max(
            (k for k in rotated if k.algorithm == args.alg and k.is_active),
            key=lambda k: k.created_at,
        )
        if new.signs_from is None:
            print(
                f"new {args.alg} signing key {new.key_id}; older ones still verify; "
                "a running service picks it up within seconds"
            )
        else:
            print(
                f"new {args.alg} key {new.key_id} verifies now and signs from "
                f"{format_instant(new.signs_from)}; copy the keys file to every "
                "host before then"
            )
    elif args.keys_command == "retire":
        change_keys(settings, lambda now: now.settled(clock.now()).retired(args.kid))
        print(
            f"retired key {args.kid}; links and access tokens it signed no longer "
            "verify"
        )
    else:
        _print_json(ring.jwks())
    return 0


def _for_new_home(settings: Settings, base_url: str) -> Settings:
    """``settings`` with ``base_url``, and the issuer with it unless configured."""
    settings = settings.with_base_url(base_url)
    if "issuer" in settings.configured:
        return settings
    return replace(settings, issuer=settings.base_url)


def _init(settings: Settings, clock: Clock, args: argparse.Namespace) -> int:
    if args.base_url is not None:
        settings = _for_new_home(settings, args.base_url)
        if settings.config_path.exists():
            raise ConfigurationError(
                f"{settings.config_path} exists already; set base_url there (or "
                "ACTIONLINKS_BASE_URL)"
            )
    created = initialize(settings, clock=clock)
    if created:
        for path in created:
            print(f"created {path}")
        print(f"links are built for {settings.base_url}")
        print("next: actionlinks mint password-reset --sub user:42")
    else:
        print(f"already initialised in {settings.home}; nothing changed")
    return 0


async def _tokens(service: Service, args: argparse.Namespace) -> int:
    if args.tokens_command == "revoke":
        await service.access.revoke(args.jti)
        print(f"revoked access token {args.jti}")
        return 0
    minted = service.access.issue(args.scopes, subject=args.name, ttl=args.ttl)
    if args.json:
        _print_json(
            {
                "token": minted.token,
                "jti": minted.claims.token_id,
                "scope": " ".join(sorted(minted.claims.scopes)),
                "expires_at": format_instant(minted.claims.expires_at),
            }
        )
    else:
        print(minted.token)
    return 0


def _listening_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in _WILDCARDS else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


async def _open_once(service: Service) -> None:
    async with service:
        pass


def _serve(settings: Settings, clock: Clock, args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536 or args.workers < 1:
        raise ConfigurationError("--port must be 1-65535 and --workers at least 1")
    here = _listening_url(args.host, args.port)
    derived = "base_url" not in settings.configured
    if derived:
        fresh = not settings.config_path.exists()
        settings = (
            _for_new_home(settings, here) if fresh else settings.with_base_url(here)
        )
    created = initialize(settings, clock=clock)  # records base URL and issuer
    if created:
        print(f"initialised {settings.home}: {', '.join(p.name for p in created)}")
    service = Service(settings, clock=clock, log_warnings=False)  # exit 2 if bad
    sock = listen(args.host, args.port)  # a port in use or an unknown host: exit 2
    try:
        asyncio.run(_open_once(service))  # the database: exit 3 if unavailable
    except BaseException:
        sock.close()
        raise
    print(f"actionlinks serving links for {settings.base_url} on {here}")
    if derived and settings.config_path not in created:
        print(
            "  base URL from --host/--port; set base_url in actionlinks.toml so "
            "that 'actionlinks mint' builds the same links"
        )
    elif _origin(settings.base_url) != _origin(here):
        print(f"  note: links point to {settings.base_url}, not to {here}")
    print(f"home {settings.home}; mint a first link with:")
    print("  actionlinks mint email-confirm --sub you@example.com")
    sys.stdout.flush()
    serve_forever(
        sock,
        workers=args.workers,
        env={
            "ACTIONLINKS_HOME": str(settings.home),
            "ACTIONLINKS_BASE_URL": settings.base_url,
        },
    )
    return 0


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port


async def _with_service(settings: Settings, args: argparse.Namespace) -> int:
    async with Service(settings, log_warnings=False, deliver=False) as service:
        if args.command == "webhooks":
            return await cli_webhooks.run_webhooks(service, args)
        if args.command == "mail":
            return await cli_mail.run_mail(service, args)
        if args.command == "mint":
            return await _mint(service, args)
        if args.command == "verify":
            return await _verify(service, args)
        if args.command == "tokens":
            return await _tokens(service, args)
        if args.command == "status":
            return await _status(service, args)
        return await _revoke(service, args)


async def _migrate(settings: Settings) -> int:
    """Create or update the schema, and say which.

    The service is not opened: opening it would migrate first.
    """
    store = Service(settings, log_warnings=False, deliver=False).store
    await store.connect()
    try:
        found = await store.schema_version()
        version = await store.migrate()
    finally:
        await store.aclose()
    if found == 0:
        done = f"created the database schema (version {version})"
    elif found < version:
        done = f"updated the database schema from version {found} to {version}"
    else:
        done = f"the database schema is current (version {version})"
    print(f"{done}: {store!r}")
    return 0


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the command line ``argv`` with environment ``env``; return the exit code."""
    args = _parser().parse_args(argv)
    clock = SystemClock()
    try:
        settings = Settings.from_env(env)
        if args.command == "init":
            return _init(settings, clock, args)
        if args.command == "keys":
            return _keys(settings, clock, args)
        if args.command == "serve":
            return _serve(settings, clock, args)
        for warning in settings.warnings:
            print(f"actionlinks: warning: {warning}", file=sys.stderr)
        if args.command == "migrate":
            return asyncio.run(_migrate(settings))
        return asyncio.run(_with_service(settings, args))
    except TokenError as exc:
        print(f"actionlinks: rejected: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except LedgerUnavailableError as exc:
        print(f"actionlinks: unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ActionLinksError as exc:
        print(f"actionlinks: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UnicodeError:  # an argument that is not text (bytes from a shell)
        print("actionlinks: error: arguments must be UTF-8 text", file=sys.stderr)
        return EXIT_USAGE


def main() -> NoReturn:
    """Entry point of the ``actionlinks`` console script."""
    try:
        code = run(sys.argv[1:], os.environ)
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # The reader went away (`… | head -c1`): stop quietly, and keep Python
        # from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_CLOSED_PIPE
    except OSError as exc:  # stdout is a full disk, say: the work may be done
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        print(
            f"actionlinks: error: cannot write the output: {exc.strerror}",
            file=sys.stderr,
        )
        code = EXIT_USAGE
    sys.exit(code)
