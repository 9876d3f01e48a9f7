"""The /v1/webhooks API in process: rotation overlaps, enabling, paging."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from actionlinks.home import initialize
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.web import create_app

BASE = "https://links.example.test"
URL = "https://hooks.example.com/in"


@pytest.fixture
def service(tmp_path, clock):
    settings = Settings(home=tmp_path, base_url=BASE, issuer=BASE)
    initialize(settings, clock=clock)
    # No worker: these tests read what is stored, nothing is sent.
    return Service(settings, clock=clock, deliver=False)


@pytest.fixture
def client(service):
    token = service.access.issue(["webhooks:read", "webhooks:write"]).token
    with TestClient(create_app(service), base_url="http://testserver") as client:
        client.headers["authorization"] = f"Bearer {token}"
        yield client


def add(client, **fields):
    answer = client.post("/v1/webhooks/endpoints", json={"url": URL, **fields})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_rotation_takes_an_overlap_and_refuses_a_bad_one(client, clock):
    """{"overlap": "1h"} ends the old secret an hour from now."""
    endpoint = add(client)
    rotated = client.post(
        f"/v1/webhooks/endpoints/{endpoint['id']}/rotate", json={"overlap": "1h"}
    )
    assert rotated.status_code == 200
    until = (clock.now() + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert rotated.json()["previous_secrets_until"] == [until]
    for overlap in ("soon", 5, "-1h"):
        bad = client.post(
            f"/v1/webhooks/endpoints/{endpoint['id']}/rotate", json={"overlap": overlap}
        )
        assert (bad.status_code, bad.json()["field"]) == (422, "overlap")
    unknown = client.post(
        f"/v1/webhooks/endpoints/{endpoint['id']}/rotate", json={"ttl": "1h"}
    )
    assert unknown.json()["field"] == "ttl"


def test_a_disabled_endpoint_is_enabled_again(client):
    """DELETE disables, POST …/enable takes new messages again."""
    endpoint = add(client, event_types=["a"])
    assert client.delete(f"/v1/webhooks/endpoints/{endpoint['id']}").json()[
        "state"
    ] == ("disabled")
    sent = client.post("/v1/webhooks/messages", json={"event_type": "a", "payload": {}})
    assert sent.json()["deliveries"] == []
    enabled = client.post(f"/v1/webhooks/endpoints/{endpoint['id']}/enable")
    assert enabled.json()["state"] == "enabled"
    sent = client.post("/v1/webhooks/messages", json={"event_type": "a", "payload": {}})
    assert [d["endpoint_id"] for d in sent.json()["deliveries"]] == [endpoint["id"]]


def test_messages_are_listed_page_by_page(client, clock):
    """limit and before page through the messages, newest first."""
    add(client)
    ids = []
    for number in range(5):
        sent = client.post(
            "/v1/webhooks/messages", json={"event_type": "a", "payload": {"n": number}}
        )
        ids.append(sent.json()["id"])
        clock.advance(timedelta(seconds=1))
    first = client.get("/v1/webhooks/messages", params={"limit": 2}).json()
    assert [m["id"] for m in first["messages"]] == ids[:-3:-1]
    assert first["next"] == ids[-2]
    second = client.get(
        "/v1/webhooks/messages", params={"limit": 3, "before": first["next"]}
    ).json()
    assert [m["id"] for m in second["messages"]] == ids[-3::-1]
    assert second["next"] == ids[0]
    last = client.get(
        "/v1/webhooks/messages", params={"limit": 3, "before": ids[0]}
    ).json()
    assert last == {"messages": [], "next": None}
    pending = client.get("/v1/webhooks/messages", params={"state": "pending"}).json()
    assert len(pending["messages"]) == 5


def test_the_same_id_sent_twice_is_one_message(client):
    """A retried POST with your id answers the stored message (202), not a copy."""
    add(client)
    body = {"event_type": "a", "payload": {"n": 1}, "id": "order-1"}
    first = client.post("/v1/webhooks/messages", json=body)
    again = client.post("/v1/webhooks/messages", json=body)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    other = client.post("/v1/webhooks/messages", json={**body, "payload": {"n": 2}})
    assert (other.status_code, other.json()["error"]) == (409, "message_exists")
    listed = client.get("/v1/webhooks/messages").json()["messages"]
    assert [m["id"] for m in listed] == ["order-1"]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        (
            "/v1/webhooks/messages",
            b'{"event_type":"a","payload":{"x":NaN}}',
            422,
            "body",
        ),
        (
            "/v1/webhooks/messages",
            b'{"event_type":"a","payload":{"x":Infinity}}',
            422,
            "body",
        ),
        (
            "/v1/webhooks/messages",
            b'{"event_type":"a","payload":' + b'{"x":' * 40 + b"1" + b"}" * 41,
            422,
            "payload",
        ),
        (
            "/v1/webhooks/messages",
            b'{"event_type":"a","payload":{"\\ud800":1}}',
            422,
            "payload",
        ),
        (
            "/v1/webhooks/messages",
            b'{"event_type":"a","payload":{},"endpoint_id":"\\ud800"}',
            422,
            "endpoint_id",
        ),
        ("/v1/webhooks/endpoints", b'{"url":"https://ex\\ud800.com/"}', 422, "url"),
    ],
)
def test_json_that_could_not_be_shown_again_is_refused(
    client, path, body, status, field
):
    """NaN, Infinity, deep nesting and lone surrogates: 422 naming the field,
    and nothing stored (they used to be accepted and then fail to render)."""
    answer = client.post(
        path, content=body, headers={"content-type": "application/json"}
    )
    assert (answer.status_code, answer.json()["field"]) == (status, field)
    assert client.get("/v1/webhooks/messages").json()["messages"] == []
    assert client.get("/v1/webhooks/endpoints").json()["endpoints"] == []


def test_paging_parameters_are_strict(client):
    """limit is 1-100 written plainly; before must name a message."""
    add(client)
    sent = client.post("/v1/webhooks/messages", json={"event_type": "a", "payload": {}})
    for query, field in (
        ({"limit": "00050"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"before": "msg_unknown"}, "before"),
        ({"before": "bad id"}, "before"),
    ):
        answer = client.get("/v1/webhooks/messages", params=query)
        assert (answer.status_code, answer.json()["field"]) == (422, field), query
    answer = client.get("/v1/webhooks/messages", params={"before": sent.json()["id"]})
    assert answer.json() == {"messages": [], "next": None}


def test_a_urls_query_is_shown_only_when_the_endpoint_is_registered(client):
    """A token in the URL's query is in the 201, never in listings or reprs."""
    url = URL + "?token=SECRET123"
    endpoint = add(client, url=url)
    assert endpoint["url"] == url
    listed = client.get("/v1/webhooks/endpoints").json()["endpoints"]
    assert listed[0]["url"] == URL + "?…"
    assert "SECRET123" not in client.get("/v1/webhooks/endpoints").text


async def test_endpoint_records_never_show_a_url_query_or_secret(service):
    """The record's repr names the id only."""
    async with service:
        record, secret = await service.webhooks.add_endpoint(URL + "?token=SECRET123")
    assert "SECRET123" not in repr(record)
    assert secret not in repr(record)
