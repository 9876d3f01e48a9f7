"""The ``actionlinks`` command: argument parsing only; the library does the work.

Exit codes: 0 success; 1 a token was rejected; 2 usage or configuration error;
3 the ledger database is unavailable. Errors are one line on stderr, never a
traceback, and never contain a token or a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from actionlinks.access import SCOPES
from actionlinks.actions import token_from
from actionlinks.clock import SystemClock, format_instant
from actionlinks.errors import (
    ActionLinksError,
    ConfigurationError,
    LedgerUnavailableError,
    TokenError,
)
from actionlinks.keys import ALGORITHMS, load_keyring, parse_algorithm
from actionlinks.server import serve_forever
from actionlinks.service import Service, initialize, replace_keys
from actionlinks.settings import Settings, parse_duration
from actionlinks.store import status_json

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from actionlinks.clock import Clock
    from actionlinks.tokens import ActionClaims

EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"actionlinks: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="actionlinks",
        description="Signed, single-purpose, one-time action links. "
        "Reads its home directory from ACTIONLINKS_HOME (default: here).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("init", help="create the config and keys in the home dir")

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

    keys = commands.add_parser("keys", help="list, rotate, retire or export keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    listing = key_commands.add_parser("list", help="list the keys")
    listing.add_argument("--json", action="store_true")
    rotate = key_commands.add_parser("rotate", help="add a new signing key")
    rotate.add_argument("--alg", type=_algorithm, choices=ALGORITHMS, default="HS256")
    retire = key_commands.add_parser("retire", help="remove a verify-only key")
    retire.add_argument("kid", metavar="KID")
    key_commands.add_parser("jwks", help="print the public JWK Set")
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
    except ValueError as exc:
        raise argparse.ArgumentTypeError("--data must be a JSON object") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("--data must be a JSON object")
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
    claims = await service.registry.check(
        token_from(args.token),
        action=args.action,
        state=args.state,
        ignore_state=args.state is None,
    )
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
    found = await service.store.status(args.jti)
    if found is None:
        raise ConfigurationError(f"no link with jti {args.jti[:64]!r} in this database")
    if args.json:
        _print_json(status_json(found))
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
    for attempt in found.rejected:
        print(f"  rejected {format_instant(attempt.at)} ({attempt.reason})")
    return 0


async def _revoke(service: Service, args: argparse.Namespace) -> int:
    if args.jti is not None:
        if args.action is not None:
            raise ConfigurationError("--action goes with --sub, not --jti")
        await service.registry.revoke(args.jti)
        print(f"revoked link {args.jti}")
    else:
        await service.registry.revoke_subject(args.sub, action=args.action)
        scope = f"{args.action} links" if args.action else "links"
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
            }
            for key in ring
        ]
        if args.json:
            _print_json(rows)
        else:
            for row in rows:
                print(
                    "  ".join(
                        (
                            row["kid"],
                            f"{row['alg']:<5}",
                            f"{row['status']:<8}",
                            row["created"],
                        )
                    )
                )
    elif args.keys_command == "rotate":
        rotated = ring.rotated(args.alg, created_at=clock.now())
        replace_keys(settings, rotated)
        new = rotated.signing_key(args.alg)
        print(f"new {args.alg} signing key {new.key_id}; older ones still verify")
    elif args.keys_command == "retire":
        replace_keys(settings, ring.retired(args.kid))
        print(f"retired key {args.kid}; links it signed no longer verify")
    else:
        _print_json(ring.jwks())
    return 0


def _init(settings: Settings, clock: Clock) -> int:
    created = initialize(settings, clock=clock)
    if created:
        for path in created:
            print(f"created {path}")
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


def _serve(settings: Settings, clock: Clock, args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536 or args.workers < 1:
        raise ConfigurationError("--port must be 1-65535 and --workers at least 1")
    created = initialize(settings, clock=clock)
    if created:
        print(f"initialised {settings.home}: {', '.join(p.name for p in created)}")
    Service.open(settings, clock=clock).close()  # fail here, not in every worker
    print(f"actionlinks serving {settings.base_url} on http://{args.host}:{args.port}")
    print(f"home {settings.home}; mint a first link with:")
    print("  actionlinks mint email-confirm --sub you@example.com")
    serve_forever(settings, host=args.host, port=args.port, workers=args.workers)
    return 0


async def _with_service(
    settings: Settings, clock: Clock, args: argparse.Namespace
) -> int:
    async with Service.open(settings, clock=clock) as service:
        if args.command == "mint":
            return await _mint(service, args)
        if args.command == "verify":
            return await _verify(service, args)
        if args.command == "tokens":
            return await _tokens(service, args)
        if args.command == "status":
            return await _status(service, args)
        if args.command == "migrate":
            print(f"database schema is current: {settings.database_url}")
            return 0
        return await _revoke(service, args)


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run the command line ``argv`` with environment ``env``; return the exit code."""
    args = _parser().parse_args(argv)
    clock = SystemClock()
    try:
        settings = Settings.from_env(env)
        if args.command == "init":
            return _init(settings, clock)
        if args.command == "keys":
            return _keys(settings, clock, args)
        if args.command == "serve":
            return _serve(settings, clock, args)
        return asyncio.run(_with_service(settings, clock, args))
    except TokenError as exc:
        print(f"actionlinks: rejected: {exc}", file=sys.stderr)
        return EXIT_REJECTED
    except LedgerUnavailableError as exc:
        print(f"actionlinks: unavailable: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ActionLinksError as exc:
        print(f"actionlinks: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def main() -> NoReturn:
    """Entry point of the ``actionlinks`` console script."""
    try:
        code = run(sys.argv[1:], os.environ)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
