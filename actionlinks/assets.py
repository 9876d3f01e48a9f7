"""Where the packaged templates live: in the installed package, else the checkout."""

from __future__ import annotations

from pathlib import Path


def templates_dir() -> Path:
    """The templates folder: inside the installed package, else the checkout's."""
    package = Path(__file__).resolve().parent
    packaged = package / "templates"
    if packaged.is_dir():
        return packaged
    return package.parent / "templates"
