"""Settings: built once from ``ACTIONLINKS_HOME/actionlinks.toml`` and the environment.

Library code never reads the environment; the CLI and the ASGI entry point call
:meth:`Settings.from_env` with ``os.environ`` and pass the result down. Every
value is validated here, once: a misspelt name is refused with the nearest
known one, a number out of range or a duration beyond an action's maximum is
refused with the setting's name, never with a traceback.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from urllib.parse import urlsplit

from actionlinks.actions import DEFAULT_ACTIONS, Action, Delivery, validate_base_url
from actionlinks.errors import ConfigurationError, InvalidArgumentError
from actionlinks.mail.message import parse_mailbox

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

SmtpTls: TypeAlias = Literal["none", "starttls", "tls"]

CONFIG_FILE = "actionlinks.toml"
KEYS_FILE = "keys.json"
DATABASE_FILE = "actionlinks.db"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
ENV_PREFIX = "ACTIONLINKS_"
MAX_DURATION = timedelta(days=3650)
"""No lifetime or retry delay is longer than ten years."""
_DURATION = re.compile(r"([0-9]{1,12})\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_SCHEDULE_STEPS = 50
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DATABASE_SCHEMES = ("sqlite:///", "memory://", "postgresql://", "postgres://")
_ACTION_FIELDS = frozenset(
    {
        "ttl",
        "max_ttl",
        "one_time",
        "revokes_previous",
        "list_mail",
        "handler_url",
        "handler_secret",
        "redirect",
        "delivery",
    }
)


class Secret:
    """A string that never shows itself in a repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        """Hold ``value``."""
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the one place that needs it."""
        return self._value

    def __repr__(self) -> str:
        """Mask the value."""
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        """Compare by value."""
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        """Hash by value."""
        return hash(self._value)


def parse_duration(text: str) -> timedelta:
    """Parse ``90``, ``30s``, ``15m``, ``2h``, ``7d`` or ``1w``, up to ten years.

    Raises:
        ConfigurationError: anything else, zero, or more than ten years.
    """
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None:
        raise ConfigurationError(
            f"duration {text[:32]!r} must look like 90, 30s, 15m, 2h, 7d or 1w"
        )
    if int(found.group(1)) == 0:
        raise ConfigurationError(f"duration {text[:32]!r} must be positive")
    seconds = int(found.group(1)) * _UNITS[found.group(2)]
    if seconds > MAX_DURATION.total_seconds():
        raise ConfigurationError(f"duration {text[:32]!r} is longer than ten years")
    return timedelta(seconds=seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every setting of a running actionlinks, validated.

    Attributes:
        configured: the names of the settings given in the file or the
            environment (the others are defaults).
        warnings: what an operator should hear about (a config file readable
            by others); the CLI prints them, the service logs them.
    """

    home: Path
    base_url: str = DEFAULT_BASE_URL
    issuer: str = ""
    database_url: str = field(default="", repr=False)  # may hold a password
    ledger_url: str | None = field(default=None, repr=False)
    keys_file: Path | None = None
    leeway: timedelta = timedelta(seconds=30)
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    smtp_tls: SmtpTls = "none"
    smtp_from: str = "actionlinks@localhost"
    smtp_connections: int = 4
    mail_reply_to: str | None = None
    dkim_selector: str | None = None
    dkim_domain: str | None = None
    dkim_private_key: Path | None = None
    webhook_allow_private: bool = False
    redirect_origins: tuple[str, ...] = ()
    webhook_retry_schedule: tuple[timedelta, ...] = tuple(
        timedelta(seconds=s) for s in (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    )
    mail_retry_schedule: tuple[timedelta, ...] = tuple(
        timedelta(seconds=s) for s in (0, 30, 120, 600, 1800, 3600)
    )
    actions: tuple[Action, ...] = field(default=DEFAULT_ACTIONS, repr=False)
    configured: frozenset[str] = frozenset()
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Fill the derived defaults and validate."""
        object.__setattr__(self, "base_url", validate_base_url(self.base_url))
        if not self.issuer:
            object.__setattr__(self, "issuer", self.base_url)
        if not self.database_url:
            object.__setattr__(
                self, "database_url", f"sqlite:///{self.home / DATABASE_FILE}"
            )
        elif self.database_url.startswith("sqlite:///"):
            # sqlite:///name.db is relative to the home; sqlite:////abs/x.db absolute.
            path = self.home / self.database_url.removeprefix("sqlite:///")
            object.__setattr__(self, "database_url", f"sqlite:///{path}")
        if not self.database_url.startswith(_DATABASE_SCHEMES):
            raise ConfigurationError(
                "ACTIONLINKS_DATABASE_URL must be sqlite:///path, memory:// or "
                "postgresql://…"
            )
        dkim = (self.dkim_selector, self.dkim_domain, self.dkim_private_key)
        if any(v is not None for v in dkim) and any(v is None for v in dkim):
            raise ConfigurationError(
                "DKIM signing needs all of ACTIONLINKS_DKIM_SELECTOR, "
                "ACTIONLINKS_DKIM_DOMAIN and ACTIONLINKS_DKIM_PRIVATE_KEY"
            )
        if self.ledger_url is not None and not self.ledger_url.startswith(
            ("redis://", "rediss://")
        ):
            raise ConfigurationError(
                "ACTIONLINKS_LEDGER_URL must be redis://host:port/db (or rediss://)"
            )

    @property
    def config_path(self) -> Path:
        """The configuration file."""
        return self.home / CONFIG_FILE

    @property
    def dkim_key_path(self) -> Path | None:
        """The DKIM private key (PEM), relative to the home, if DKIM is on."""
        return (
            None if self.dkim_private_key is None else self.home / self.dkim_private_key
        )

    @property
    def keys_path(self) -> Path:
        """The keys file (a private JWK Set, mode 0600)."""
        return self.home / (self.keys_file or KEYS_FILE)

    def with_base_url(self, base_url: str) -> Settings:
        """The same settings with another base URL (the issuer stays)."""
        return replace(self, base_url=base_url, issuer=self.issuer)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, cwd: Path | None = None) -> Settings:
        """Build settings from the config file in the home directory and ``env``.

        Args:
            env: the environment (``os.environ``); its ``ACTIONLINKS_*`` names
                override the config file.
            cwd: the home directory when ``ACTIONLINKS_HOME`` is unset.

        Raises:
            ConfigurationError: an invalid file, name or value.
        """
        home = Path(env.get("ACTIONLINKS_HOME") or cwd or Path.cwd()).resolve()
        config = home / CONFIG_FILE
        file, warnings = _read_config(config)
        values: dict[str, Any] = {}
        for name, value in file.items():
            if name != "actions":
                values[_known(name, where=f"{config.name}: '{name}'")] = value
        for variable, raw in env.items():
            if variable.startswith(ENV_PREFIX) and variable != "ACTIONLINKS_HOME":
                name = _known(variable.removeprefix(ENV_PREFIX).lower(), where=variable)
                if raw:
                    values[name] = raw
        return cls(
            home=home,
            actions=_declared_actions(file.get("actions", {})),
            configured=frozenset(values),
            warnings=warnings,
            **_coerce(values),
        )


_SETTINGS = tuple(
    f.name
    for f in fields(Settings)
    if f.name not in ("home", "actions", "configured", "warnings")
)


def _known(name: str, *, where: str) -> str:
    if name in _SETTINGS:
        return name
    env = where.startswith(ENV_PREFIX)
    candidates = [ENV_PREFIX + n.upper() for n in _SETTINGS] if env else _SETTINGS
    wanted = where if env else name
    close = difflib.get_close_matches(wanted, candidates, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise ConfigurationError(f"unknown setting {where}{hint}")


def _read_config(path: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            document = tomllib.load(handle)
    except FileNotFoundError:
        return {}, ()
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc
    warnings: tuple[str, ...] = ()
    if os.name == "posix" and mode & (stat.S_IRGRP | stat.S_IROTH):
        warnings = (
            (
                f"{path} is readable by others (mode {stat.S_IMODE(mode):o}) and "
                f"may hold webhook secrets; run 'chmod 600 {path}'"
            ),
        )
    return document, warnings


def _coerce(values: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in values.items():
        convert = _CONVERTERS.get(name)
        if convert is None and name.endswith("_retry_schedule"):
            convert = _schedule
        result[name] = (convert or _text)(value, name)
    return result


def _tls(value: object, name: str) -> SmtpTls:
    if value == "none" or value == "starttls" or value == "tls":  # noqa: PLR1714 - narrows the type
        return value
    raise ConfigurationError(f"{name} must be none, starttls or tls")


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise ConfigurationError(f"{name} must be text of 1-2048 characters")
    if _CONTROL.search(value):
        raise ConfigurationError(f"{name} must not contain control characters")
    return value


def _mailbox(value: object, name: str) -> str:
    text = _text(value, name)
    try:
        parse_mailbox(text, field=name)
    except InvalidArgumentError as exc:
        raise ConfigurationError(
            f"{name} must be an address, or a name and <address>"
        ) from exc
    return text


def _integer(value: object, name: str, low: int, high: int) -> int:
    text = str(value).strip()
    if isinstance(value, bool) or not (text.isascii() and text.isdigit()):
        raise ConfigurationError(f"{name} must be an integer from {low} to {high}")
    if not low <= int(text) <= high:
        raise ConfigurationError(f"{name} must be an integer from {low} to {high}")
    return int(text)


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be 1 or 0 (true or false)")


def _items(value: object, name: str) -> list[str]:
    """A TOML list of strings, or comma-separated text (from the environment)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return [str(v).strip() for v in value]
    raise ConfigurationError(f"{name} must be a list or comma-separated text")


def _origin(text: str) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise ConfigurationError(f"redirect origin {text[:64]!r} is invalid") from exc
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path.strip("/")
        or parts.query
        or parts.username
    ):
        raise ConfigurationError(
            f"redirect origin {text[:64]!r} must be scheme://host[:port]"
        )
    return f"{parts.scheme}://{parts.netloc}"


def _schedule(value: object, name: str) -> tuple[timedelta, ...]:
    steps = _items(value, name)
    if not steps or len(steps) > _MAX_SCHEDULE_STEPS:
        raise ConfigurationError(f"{name} must list 1-{_MAX_SCHEDULE_STEPS} delays")
    limit = int(MAX_DURATION.total_seconds())
    return tuple(timedelta(seconds=_integer(s, name, 0, limit)) for s in steps)


_CONVERTERS: dict[str, Callable[[object, str], object]] = {
    "leeway": lambda v, n: timedelta(seconds=_integer(v, n, 0, 300)),
    "smtp_port": lambda v, n: _integer(v, n, 1, 65535),
    "smtp_connections": lambda v, n: _integer(v, n, 1, 64),
    "smtp_password": lambda v, n: Secret(_text(v, n)),
    "smtp_tls": _tls,
    "webhook_allow_private": _flag,
    "redirect_origins": lambda v, n: tuple(_origin(o) for o in _items(v, n)),
    "keys_file": lambda v, n: Path(_text(v, n)),
    "dkim_private_key": lambda v, n: Path(_text(v, n)),
    "smtp_from": _mailbox,
    "mail_reply_to": _mailbox,
    "base_url": lambda v, n: validate_base_url(_text(v, n)),
}


def _declared_actions(table: object) -> tuple[Action, ...]:
    if not isinstance(table, dict):
        raise ConfigurationError("[actions] must be a table of tables")
    actions = {action.name: action for action in DEFAULT_ACTIONS}
    for name, options in table.items():
        actions[name] = _declared_action(name, options, actions.get(name))
    return tuple(actions.values())


def _declared_action(name: str, options: object, base: Action | None) -> Action:
    where = f"[actions.{name}]"
    if not isinstance(options, dict):
        raise ConfigurationError(f"{where} must be a table")
    if "binds_state" in options:
        raise ConfigurationError(
            f"{where} binds_state needs a current_state provider, which only code "
            "can declare (library mode)"
        )
    unknown = set(options) - _ACTION_FIELDS
    if unknown:
        raise ConfigurationError(
            f"{where} may set only {', '.join(sorted(_ACTION_FIELDS))}; "
            f"not {', '.join(sorted(unknown))}"
        )
    ttl = _duration(options, "ttl", where)
    max_ttl = _duration(options, "max_ttl", where)
    if ttl is None:
        if base is None:
            raise ConfigurationError(f"{where} needs a ttl")
        ttl = base.ttl
    if max_ttl is None:
        max_ttl = ttl if base is None else max(base.purpose.max_ttl, ttl)
        if base is not None and ttl > base.purpose.max_ttl:
            raise ConfigurationError(
                f"{where} ttl {options['ttl']!r} is beyond the action's maximum "
                f"({int(base.purpose.max_ttl.total_seconds())} s); raise max_ttl too"
            )
    try:
        return Action(
            name=name,
            ttl=ttl,
            max_ttl=max_ttl,
            one_time=_option_flag(options, "one_time", base.one_time if base else True),
            revokes_previous=_option_flag(
                options, "revokes_previous", base.revokes_previous if base else False
            ),
            one_click=base.one_click if base else False,
            handler_url=_optional_text(options, "handler_url", where),
            handler_secret=_optional_text(options, "handler_secret", where),
            redirect=_optional_text(options, "redirect", where),
            delivery=_delivery(options, where),
            list_mail=_option_flag(
                options, "list_mail", base.list_mail if base else False
            ),
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where} {exc}") from exc


def _delivery(options: Mapping[str, object], where: str) -> Delivery:
    value = options.get("delivery", "wait")
    if value == "wait":
        return "wait"
    if value == "queued":
        return "queued"
    raise ConfigurationError(f'{where} delivery must be "wait" or "queued"')


def _duration(options: Mapping[str, object], name: str, where: str) -> timedelta | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ConfigurationError(f"{where} {name} must be a duration like '15m'")
    try:
        return parse_duration(str(value))
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where} {name}: {exc}") from exc


def _option_flag(options: Mapping[str, object], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be true or false")
    return value


def _optional_text(options: Mapping[str, object], name: str, where: str) -> str | None:
    value = options.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or _CONTROL.search(value):
        raise ConfigurationError(f"{where} {name} must be text without control codes")
    return value


def default_config(base_url: str = DEFAULT_BASE_URL, issuer: str | None = None) -> str:
    """The text of a new ``actionlinks.toml`` (values as TOML basic strings)."""
    base_url, issuer = json.dumps(base_url), json.dumps(issuer or base_url)
    return f"""\
# actionlinks configuration. ACTIONLINKS_* environment variables override it.
# This file may hold webhook secrets: keep it private (mode 0600).

# The public base URL every link is built from (never the request's Host).
base_url = {base_url}
# The issuer (iss) of every token. It stays when base_url changes, so that
# links and API access tokens already issued keep working.
issuer = {issuer}
# Clock-skew leeway in seconds for expiry checks.
leeway = 30
# Origins an action's redirect may point to, besides the base URL's own.
# redirect_origins = ["https://app.example.com"]
# Let webhooks go to this machine or a private network (a local receiver).
# webhook_allow_private = true

# Declare or adjust actions; the built-ins are password-reset, email-confirm,
# magic-signin, invite and unsubscribe.
# [actions.email-confirm]
# ttl = "24h"
# handler_url = "https://app.example.com/hooks/actionlinks"
# handler_secret = "whsec_…"
# delivery = "queued"   # answer once the link.used event is stored (default: wait)
# redirect = "https://app.example.com/welcome"
"""
