"""The built wheel ships the package, its templates and the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_templates_and_the_console_script(tmp_path):
    """`pip wheel .` puts templates under actionlinks/templates and an entry point."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("actionlinks-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for page in ("base", "confirm", "done", "error"):
        assert f"actionlinks/templates/pages/{page}.html" in names
    assert "actionlinks/templates/static/actionlinks.css" in names
    assert "actionlinks/py.typed" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "actionlinks = actionlinks.cli:main" in text
