"""The request log (issue 6, item 5): tokens redacted by the matched route,
wherever the app is mounted, and paths escaped so no line can be forged."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from actionlinks.home import initialize
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.stores import MemoryStore
from actionlinks.web import create_app

BASE = "https://app.example.test/links"


@pytest.fixture
def service(tmp_path, clock):
    settings = Settings(home=tmp_path, base_url=BASE)
    initialize(settings, clock=clock)
    return Service(settings, clock=clock, store=MemoryStore(clock=clock))


@pytest.fixture
def client(service):
    @asynccontextmanager
    async def lifespan(app):
        async with service:
            yield

    outer = Starlette(routes=[Mount("/links", create_app(service))], lifespan=lifespan)
    with TestClient(outer) as client:
        yield client


@pytest.fixture
def lines(caplog):
    caplog.set_level(logging.INFO, logger="actionlinks.access")

    def lines():
        return [
            r.getMessage() for r in caplog.records if r.name == "actionlinks.access"
        ]

    return lines


def test_mounted_link_paths_are_logged_without_the_token(service, client, lines):
    """GET /links/a/<token> is logged as /links/a/…, for pages and refusals."""
    link = client.portal.call(lambda: service.registry.mint("invite", subject="u"))
    client.get(f"/links/a/{link.token}")
    client.post(f"/links/a/{link.token}", data={"nonce": "x"})
    client.get(f"/links/a/{link.token}x")
    logged = "\n".join(lines())
    assert logged.count("/links/a/… ") == 3
    for part in link.token.split("."):
        assert part not in logged


def test_other_path_parameters_stay_readable(service, client, lines):
    """A link's jti in an API path is not a secret: it stays in the log."""
    client.get("/links/v1/links/some-jti")
    assert any("/links/v1/links/some-jti 401" in line for line in lines())


@pytest.mark.parametrize(
    "path",
    [
        "/x%0d%0a2026-01-01 INFO actionlinks.access: GET /admin 200",
        "/x%0aforged",
        "/a/%1b[31mred",
    ],
)
def test_control_characters_cannot_forge_a_log_line(service, lines, path):
    """CR, LF and escape codes in a path are percent-encoded in the log."""
    with TestClient(create_app(service)) as standalone:
        standalone.get(path)
    (line,) = lines()
    assert "\n" not in line
    assert "\r" not in line
    assert "\x1b" not in line
    assert line.startswith("GET /")
    assert "INFO actionlinks" not in line


def test_unmatched_paths_hide_long_segments(service, client, lines):
    """A token in a path no route matched is still not logged."""
    link = client.portal.call(lambda: service.registry.mint("invite", subject="u"))
    client.get(f"/links/b/{link.token}")
    client.get(f"/links/static/{link.token}/x")
    logged = "\n".join(lines())
    assert "/links/b/… 404" in logged
    assert "/links/static/…/x 404" in logged
    for part in link.token.split("."):
        assert part not in logged
