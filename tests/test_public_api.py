"""The facade: an isort-sorted __all__ of the public names, every exception included."""

from __future__ import annotations

import inspect
import subprocess
import sys

import actionlinks
from actionlinks import errors


def test_all_is_sorted_and_matches_the_public_names():
    """__all__ is sorted and lists exactly the facade's public attributes."""
    public = {
        name
        for name in vars(actionlinks)
        if not name.startswith("_") and not inspect.ismodule(getattr(actionlinks, name))
    }

    def isort_style(name: str) -> tuple[int, str]:  # ruff RUF022's order
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert actionlinks.__all__ == sorted(actionlinks.__all__, key=isort_style)
    assert set(actionlinks.__all__) - {"__version__"} == public


def test_every_exception_is_exported_under_one_root():
    """Each error class is in __all__ and derives from ActionLinksError."""
    classes = [
        obj
        for obj in vars(errors).values()
        if inspect.isclass(obj)
        and issubclass(obj, Exception)
        and obj.__module__ == errors.__name__
    ]
    assert len(classes) >= 14
    for cls in classes:
        assert cls.__name__ in actionlinks.__all__
        assert issubclass(cls, actionlinks.ActionLinksError)
        assert cls.__name__.endswith("Error")


def test_error_tree_is_drawn_in_the_errors_docstring():
    """The docstring of errors.py names every class of the tree."""
    for name in actionlinks.__all__:
        obj = getattr(actionlinks, name)
        if inspect.isclass(obj) and issubclass(obj, Exception):
            assert name in errors.__doc__


def test_version_comes_from_the_installed_metadata():
    """__version__ is the installed distribution's version."""
    from importlib.metadata import version

    assert actionlinks.__version__ == version("actionlinks")


def test_importing_tokens_loads_no_io_library_or_higher_layer():
    """actionlinks.tokens stays pure: no web, CLI, SQLite, HTTP or mail imports.

    (anyio is loaded by the facade's ActionRegistry, which shields its ledger
    writes from cancellation; it does no I/O at import.)
    """
    code = (
        "import sys; before = set(sys.modules); import actionlinks.tokens; "
        "print(','.join(sorted(m for m in set(sys.modules) - before if m.split('.')[0] "
        "in {'starlette','httpx','httpcore','aiosmtplib','jinja2','sqlite3',"
        "'_sqlite3','uvicorn'} or m in {'actionlinks.web','actionlinks.cli',"
        "'actionlinks.service','actionlinks.stores','actionlinks.settings'})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == ""


def test_importing_the_facade_stays_light():
    """`import actionlinks` loads neither the web app nor the CLI."""
    code = (
        "import sys; before = set(sys.modules); import actionlinks; "
        "print(any(m.split('.')[0] in {'starlette','uvicorn','httpx','aiosmtplib'} "
        "or m in {'actionlinks.cli','actionlinks.web'} "
        "for m in set(sys.modules) - before))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
