"""Fixtures of the in-process CLI tests."""

from __future__ import annotations

import pytest

from actionlinks.cli import run


@pytest.fixture
def home(tmp_path, capsys):
    """An initialised home; what init printed is read away."""
    assert run(["init"], {"ACTIONLINKS_HOME": str(tmp_path)}) == 0
    capsys.readouterr()
    return tmp_path
