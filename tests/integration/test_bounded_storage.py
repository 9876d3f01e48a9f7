"""Anonymous traffic does not grow storage (issue 6, item 10): 10,000 invalid
link requests against the app on a real SQLite file add a bounded few rows."""

from __future__ import annotations

import sqlite3

import httpx
import pytest
from support import forge, parts

from actionlinks.clock import SystemClock
from actionlinks.home import initialize
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.web import create_app

pytestmark = pytest.mark.integration

REQUESTS = 10_000


def row_count(path):
    with sqlite3.connect(path) as connection:
        tables = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        ]
        return sum(
            connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608 - our own table names
            for t in tables
        )


async def test_ten_thousand_invalid_requests_add_a_bounded_few_rows(tmp_path):
    """Garbage, forged signatures and unknown ids: counted, never stored per try."""
    settings = Settings(home=tmp_path)
    initialize(settings, clock=SystemClock())
    database = tmp_path / "actionlinks.db"
    async with Service(settings) as service:
        link = await service.registry.mint("invite", subject="u")
        header, payload = parts(link.token)
        other_key = service.keys.signing_key("HS256")
        await service.links.flush()
        before = row_count(database)
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver"
        ) as client:
            for number in range(REQUESTS):
                kind = number % 3
                if kind == 0:
                    token = f"garbage-{number}"
                elif kind == 1:  # a well-formed token with a forged signature
                    token = link.token.rsplit(".", 1)[0] + f".forged{number}"
                else:  # signed, naming a key id the service does not have
                    forged = {**payload, "jti": f"unknown-{number}"}
                    token = forge({**header, "kid": "other"}, forged, other_key)
                response = await client.get(f"/a/{token}")
                assert response.status_code == 400
        await service.links.flush()
        after = row_count(database)
        counts = await service.links.rejection_counts(since=link.claims.issued_at)
    assert after - before <= 4, (before, after)
    assert sum(counts.values()) == REQUESTS
