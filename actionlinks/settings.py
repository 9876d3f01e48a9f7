"""Settings: built once from ``ACTIONLINKS_HOME/actionlinks.toml`` and the environment.

Library code never reads the environment; the CLI and the ASGI entry point call
:meth:`Settings.from_env` with ``os.environ`` and pass the result down.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from actionlinks.actions import DEFAULT_ACTIONS, Action, validate_base_url
from actionlinks.errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

SmtpTls: TypeAlias = Literal["none", "starttls", "tls"]

CONFIG_FILE = "actionlinks.toml"
KEYS_FILE = "keys.json"
DATABASE_FILE = "actionlinks.db"
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ACTION_FIELDS = frozenset(
    {
        "ttl",
        "max_ttl",
        "one_time",
        "binds_state",
        "revokes_previous",
        "handler_url",
        "handler_secret",
        "redirect",
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
    """Parse ``90``, ``30s``, ``15m``, ``2h``, ``7d`` or ``1w``.

    Raises:
        ConfigurationError: anything else, or zero.
    """
    found = _DURATION.fullmatch(text.strip().lower())
    if found is None or int(found.group(1)) == 0 or len(found.group(1)) > 9:
        raise ConfigurationError(
            f"duration {text[:32]!r} must look like 90, 30s, 15m, 2h, 7d or 1w"
        )
    return timedelta(seconds=int(found.group(1)) * _UNITS[found.group(2)])


def _schedule(text: str, name: str) -> tuple[timedelta, ...]:
    try:
        seconds = tuple(int(part) for part in text.split(","))
    except ValueError as exc:
        raise ConfigurationError(f"{name} must be comma-separated seconds") from exc
    if not seconds or any(s < 0 for s in seconds):
        raise ConfigurationError(f"{name} must be non-negative seconds")
    return tuple(timedelta(seconds=s) for s in seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every setting of a running actionlinks, validated."""

    home: Path
    base_url: str = DEFAULT_BASE_URL
    issuer: str = DEFAULT_BASE_URL
    database_url: str = ""
    ledger_url: str | None = None
    leeway: timedelta = timedelta(seconds=30)
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: Secret | None = None
    smtp_tls: SmtpTls = "none"
    smtp_from: str = "actionlinks@localhost"
    webhook_allow_private: bool = False
    redirect_origins: tuple[str, ...] = ()
    webhook_retry_schedule: tuple[timedelta, ...] = tuple(
        timedelta(seconds=s) for s in (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    )
    mail_retry_schedule: tuple[timedelta, ...] = tuple(
        timedelta(seconds=s) for s in (0, 30, 120, 600, 1800, 3600)
    )
    actions: tuple[Action, ...] = field(default=DEFAULT_ACTIONS, repr=False)

    def __post_init__(self) -> None:
        """Fill the database URL and validate."""
        validate_base_url(self.base_url)
        if not self.database_url:
            object.__setattr__(
                self, "database_url", f"sqlite:///{self.home / DATABASE_FILE}"
            )
        if not self.database_url.startswith(("sqlite:///", "postgresql://")):
            raise ConfigurationError(
                "ACTIONLINKS_DATABASE_URL must be sqlite:///path or postgresql://…"
            )

    @property
    def config_path(self) -> Path:
        """The configuration file."""
        return self.home / CONFIG_FILE

    @property
    def keys_path(self) -> Path:
        """The keys file (a private JWK Set, mode 0600)."""
        return self.home / KEYS_FILE

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database file.

        Raises:
            ConfigurationError: the database is not SQLite.
        """
        if not self.database_url.startswith("sqlite:///"):
            raise ConfigurationError(
                "this version stores everything in SQLite; PostgreSQL support "
                "(ACTIONLINKS_DATABASE_URL=postgresql://…) is not there yet"
            )
        return Path(self.database_url.removeprefix("sqlite:///"))

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, cwd: Path | None = None) -> Settings:
        """Build settings from the config file in the home directory and ``env``.

        Args:
            env: the environment (``os.environ``); its ``ACTIONLINKS_*`` names
                override the config file.
            cwd: the home directory when ``ACTIONLINKS_HOME`` is unset.

        Raises:
            ConfigurationError: an invalid file or value.
        """
        home = Path(env.get("ACTIONLINKS_HOME") or cwd or Path.cwd()).resolve()
        file = _read_config(home / CONFIG_FILE)
        values: dict[str, Any] = {k: v for k, v in file.items() if k != "actions"}
        for name, raw in env.items():
            if name.startswith("ACTIONLINKS_") and name != "ACTIONLINKS_HOME" and raw:
                values[name.removeprefix("ACTIONLINKS_").lower()] = raw
        actions = _declared_actions(file.get("actions", {}))
        return cls(home=home, actions=actions, **_coerce(values))


def _read_config(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}") from exc


def _coerce(values: Mapping[str, Any]) -> dict[str, Any]:  # noqa: C901 - a flat table
    known = set(Settings.__dataclass_fields__) - {"home", "actions"}
    unknown = set(values) - known
    if unknown:
        raise ConfigurationError(f"unknown settings: {', '.join(sorted(unknown))}")
    result: dict[str, Any] = {}
    for name, value in values.items():
        text = str(value)
        if name == "leeway":
            result[name] = timedelta(seconds=_integer(text, name, 0, 300))
        elif name == "smtp_port":
            result[name] = _integer(text, name, 1, 65535)
        elif name == "smtp_password":
            result[name] = Secret(text)
        elif name == "smtp_tls":
            if text not in ("none", "starttls", "tls"):
                raise ConfigurationError("SMTP TLS must be none, starttls or tls")
            result[name] = text
        elif name == "webhook_allow_private":
            result[name] = text.lower() in ("1", "true", "yes")
        elif name == "redirect_origins":
            result[name] = tuple(o.strip() for o in text.split(",") if o.strip())
        elif name.endswith("_retry_schedule"):
            result[name] = _schedule(text, name)
        else:
            result[name] = text
    if "issuer" not in result and "base_url" in result:
        result["issuer"] = result["base_url"]
    return result


def _integer(text: str, name: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConfigurationError(f"{name} must be an integer from {low} to {high}")
    return int(text)


def _declared_actions(table: object) -> tuple[Action, ...]:
    if not isinstance(table, dict):
        raise ConfigurationError("[actions] must be a table of tables")
    actions = {action.name: action for action in DEFAULT_ACTIONS}
    for name, options in table.items():
        if not isinstance(options, dict) or not _ACTION_FIELDS.issuperset(options):
            raise ConfigurationError(
                f"[actions.{name}] may set only {', '.join(sorted(_ACTION_FIELDS))}"
            )
        base = actions.get(name)
        ttl = options.get("ttl")
        max_ttl = options.get("max_ttl")
        actions[name] = Action(
            name=name,
            ttl=parse_duration(str(ttl)) if ttl else _base(base, name).ttl,
            max_ttl=parse_duration(str(max_ttl))
            if max_ttl
            else _inherited_max_ttl(base, ttl),
            one_time=bool(options.get("one_time", base.one_time if base else True)),
            binds_state=bool(options.get("binds_state", False)),
            revokes_previous=bool(
                options.get(
                    "revokes_previous", base.revokes_previous if base else False
                )
            ),
            one_click=base.one_click if base else False,
            handler_url=_optional_text(options, "handler_url"),
            handler_secret=_optional_text(options, "handler_secret"),
            redirect=_optional_text(options, "redirect"),
        )
    return tuple(actions.values())


def _inherited_max_ttl(base: Action | None, ttl: object) -> timedelta | None:
    if base is None:
        return None
    if ttl:
        return max(base.purpose.max_ttl, parse_duration(str(ttl)))
    return base.purpose.max_ttl


def _optional_text(options: Mapping[str, object], name: str) -> str | None:
    value = options.get(name)
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string")
    return value


def _base(base: Action | None, name: str) -> Action:
    if base is None:
        raise ConfigurationError(f"[actions.{name}] needs a ttl")
    return base


def default_config(base_url: str = DEFAULT_BASE_URL) -> str:
    """The text of a new ``actionlinks.toml``."""
    return f"""\
# actionlinks configuration. ACTIONLINKS_* environment variables override it.
# The public base URL every link is built from (never the request's Host).
base_url = "{base_url}"
# Clock-skew leeway in seconds for expiry checks.
leeway = 30

# Declare or adjust actions; the built-ins are password-reset, email-confirm,
# magic-signin, invite and unsubscribe.
# [actions.password-reset]
# ttl = "30m"
# max_ttl = "2h"
"""
