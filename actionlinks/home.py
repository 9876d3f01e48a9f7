"""The home directory: ``actionlinks.toml`` and the keys file, created private.

``actionlinks init`` (and ``serve`` in an empty directory) writes both with mode
0600 and never overwrites either; ``keys rotate`` and ``keys retire`` replace the
keys file atomically, and a running service picks the change up.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from actionlinks.errors import ConfigurationError, KeyFileError
from actionlinks.keyfile import save_keyring, update_keyring
from actionlinks.keys import KeyRing
from actionlinks.settings import default_config

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from actionlinks.clock import Clock
    from actionlinks.settings import Settings


def initialize(settings: Settings, *, clock: Clock) -> list[Path]:
    """Create the config and keys files in the home directory, never overwriting.

    The config records the base URL and the issuer of ``settings``.

    Returns:
        The files created; empty when everything was already there.

    Raises:
        ConfigurationError: the home directory cannot be created or written.
    """
    created: list[Path] = []
    try:
        settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create {settings.home}: {exc}") from exc
    config = settings.config_path
    text = default_config(settings.base_url, settings.issuer)
    try:
        # Created private: the file may come to hold webhook secrets.
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        created.append(config)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigurationError(f"cannot write {config}: {exc}") from exc
    if not settings.keys_path.exists():
        ring = KeyRing.generate(created_at=clock.now())
        try:
            save_keyring(ring, settings.keys_path)
            created.append(settings.keys_path)
        except KeyFileError:
            if not settings.keys_path.exists():  # pragma: no cover - disk errors
                raise
    return created


def change_keys(settings: Settings, change: Callable[[KeyRing], KeyRing]) -> KeyRing:
    """Rotate or retire keys in the keys file, one change at a time (mode 0600).

    Raises:
        KeyFileError: the file cannot be read or written.
        ConfigurationError: ``change`` refused.
    """
    return update_keyring(settings.keys_path, change)
