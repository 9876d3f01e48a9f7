"""The keys file: a private JWK Set on disk (mode 0600), read, written and watched.

:func:`load_keyring` refuses a file that group or others may read;
:func:`save_keyring` writes atomically and never overwrites an existing file
unless told to. :class:`KeyFile` remembers what it last loaded, so that a running
service notices a rotated or retired key (a new file renamed into place) by one
``stat`` call.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import stat
from typing import TYPE_CHECKING

from actionlinks.errors import KeyFileError
from actionlinks.keys import KeyRing

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

FileStamp = tuple[int, int, int, int, int]
"""Device, inode, mode, size and modification time (ns): changes when the file
does, and when its permissions are fixed (``chmod 600``)."""


def load_keyring(path: Path) -> KeyRing:
    """Read the keys file at ``path``.

    Raises:
        KeyFileError: it is missing, unreadable, readable by group or others,
            or not a valid private JWK Set.
    """
    return _load(path)[0]


def _stamp(info: os.stat_result) -> FileStamp:
    return (info.st_dev, info.st_ino, info.st_mode, info.st_size, info.st_mtime_ns)


def _load(path: Path) -> tuple[KeyRing, FileStamp]:
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            raw = handle.read()
    except FileNotFoundError as exc:
        raise KeyFileError(
            f"no keys file at {path}; run 'actionlinks init' first"
        ) from exc
    except OSError as exc:
        raise KeyFileError(f"cannot read keys file {path}: {exc.strerror}") from exc
    if os.name == "posix" and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"keys file {path} is accessible by group or others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run 'chmod 600 {path}'"
        )
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise KeyFileError(f"keys file {path} is not valid JSON") from exc
    return KeyRing.from_private_jwks(document), _stamp(info)


def save_keyring(ring: KeyRing, path: Path, *, replace: bool = False) -> None:
    """Write ``ring`` to ``path`` atomically with mode 0600.

    Args:
        ring: the keys to write.
        path: the keys file.
        replace: whether an existing file may be replaced (rotation, retirement);
            without it an existing file is never touched.

    Raises:
        KeyFileError: the file exists and ``replace`` is false, or it cannot be
            written.
    """
    data = json.dumps(ring.to_private_jwks(), indent=2).encode() + b"\n"
    if not replace and path.exists():
        raise KeyFileError(f"keys file {path} already exists; not overwriting it")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            # A rename: a running service sees the old file or the new one, whole.
            temporary.replace(path)
        else:
            # link() fails if the file appeared meanwhile: never a silent overwrite.
            os.link(temporary, path)
            temporary.unlink()
    except FileExistsError as exc:
        temporary.unlink(missing_ok=True)
        raise KeyFileError(
            f"keys file {path} already exists; not overwriting it"
        ) from exc
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise KeyFileError(f"cannot write keys file {path}: {exc.strerror}") from exc


def update_keyring(path: Path, change: Callable[[KeyRing], KeyRing]) -> KeyRing:
    """Read, ``change`` and write the keys file under an exclusive lock.

    Concurrent rotations and retirements take turns, so none is lost and a
    retired key never comes back. The lock is a private file beside the keys
    file (``.keys.json.lock``); readers need no lock (writes are renames).

    Raises:
        KeyFileError: the file cannot be read, locked or written.
        ConfigurationError: ``change`` refused (an unknown key, say).
    """
    lock = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise KeyFileError(f"cannot lock keys file {path}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        ring = change(load_keyring(path))
        save_keyring(ring, path, replace=True)
        return ring
    finally:
        os.close(fd)  # closing releases the lock


class KeyFile:
    """The keys file of a running service, reloaded when it changes.

    Args:
        path: the keys file.
    """

    __slots__ = ("_path", "_stamp")

    def __init__(self, path: Path) -> None:
        """Watch ``path``; nothing is read until :meth:`load`."""
        self._path = path
        self._stamp: FileStamp | None = None

    def __repr__(self) -> str:
        """Name the file."""
        return f"KeyFile({str(self._path)!r})"

    @property
    def path(self) -> Path:
        """The keys file."""
        return self._path

    def load(self) -> KeyRing:
        """Read the ring and remember the file's stamp (blocking: a thread's job).

        Raises:
            KeyFileError: see :func:`load_keyring`; the stamp is kept, so a
                broken file is reported once, not at every check.
        """
        try:
            ring, self._stamp = _load(self._path)
        except KeyFileError:
            self._stamp = self._current_stamp()
            raise
        return ring

    def has_changed(self) -> bool:
        """Whether the file differs from what :meth:`load` last saw (one stat)."""
        return self._current_stamp() != self._stamp

    def _current_stamp(self) -> FileStamp | None:
        try:
            return _stamp(self._path.stat())
        except OSError:
            return None
