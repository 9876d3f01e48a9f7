"""Durable webhook delivery by a real `actionlinks serve` to real receivers.

Every test runs the installed command under uvicorn and a receiver on
127.0.0.1 that verifies each delivery with the reference ``standardwebhooks``
library. Short retry schedules (``ACTIONLINKS_WEBHOOK_RETRY_SCHEDULE=0,1,1``)
stand in for the long default; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import time

import httpx
import jwt
import pytest
from apis import Api
from servers import SCRIPT, Receiver, ServeProcess

from actionlinks.webhooks import WEBHOOK_TYP

FAST = {
    "ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1",
    "ACTIONLINKS_WEBHOOK_RETRY_SCHEDULE": "0,1,1,1,1",
}


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(env=None, **kwargs):
        server = ServeProcess(tmp_path, env={**FAST, **(env or {})}, **kwargs)
        server.clients = []
        started.append(server)
        return server

    yield start
    for server in started:
        for client in server.clients:
            client.close()
        server.stop()


def test_an_event_reaches_a_registered_receiver_verified_by_secret_and_by_jwt(serve):
    """The new user's walk: register, send, verify with standardwebhooks and with
    the JWT against the JWKS, see the attempt."""
    server = serve()
    api = Api(server)
    with Receiver() as receiver:
        endpoint = api.add(receiver.url, event_types=["user.created"])
        receiver.secret = endpoint["secret"]
        assert endpoint["secret"].startswith("whsec_")
        sent = api.send("user.created", {"id": 42, "email": "ada@example.com"})
        assert sent["state"] == "pending"
        assert [d["endpoint_id"] for d in sent["deliveries"]] == [endpoint["id"]]
        shown = api.wait_for(sent["id"], "delivered")
    [(headers, body)] = receiver.requests
    assert headers["webhook-id"] == sent["id"]
    assert receiver.events == [json.loads(body)]
    assert json.loads(body)["data"] == {"id": 42, "email": "ada@example.com"}
    # The JWT header, checked with nothing but PyJWT and the published JWKS.
    token = headers["authorization"].removeprefix("Bearer ")
    jwks = jwt.PyJWKSet.from_dict(
        httpx.get(f"{server.base_url}/.well-known/jwks.json").json()
    )
    header = jwt.get_unverified_header(token)
    assert header["typ"] == WEBHOOK_TYP
    key = next(k for k in jwks.keys if k.key_id == header["kid"])
    claims = jwt.decode(
        token,
        key.key,
        algorithms=[header["alg"]],
        audience=receiver.url,
        issuer=server.base_url,
    )
    digest = base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b"=")
    assert claims["body_sha256"] == digest.decode()
    assert claims["jti"] == sent["id"]
    assert claims["exp"] - claims["iat"] <= 300
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(
            token, key.key, algorithms=[header["alg"]], audience="https://x.example"
        )
    [delivery] = shown["deliveries"]
    [attempt] = delivery["history"]
    assert attempt["status"] == 204
    assert attempt["latency_ms"] >= 0
    assert shown["payload"] == {"id": 42, "email": "ada@example.com"}


def test_503_503_200_makes_three_attempts_with_one_id(serve):
    """Retries follow the schedule and every attempt carries the same id."""
    server = serve()
    api = Api(server)
    with Receiver(statuses=[503, 503, 200]) as receiver:
        receiver.secret = api.add(receiver.url)["secret"]
        sent = api.send("user.created", {"id": 1})
        shown = api.wait_for(sent["id"], "delivered")
    assert receiver.attempts == [
        (sent["id"], 503),
        (sent["id"], 503),
        (sent["id"], 200),
    ]
    history = shown["deliveries"][0]["history"]
    assert [a["status"] for a in history] == [503, 503, 200]
    # The signature is fresh on each attempt; the body is the same bytes.
    assert len({body for _, body in receiver.requests}) == 1


def test_a_410_disables_the_endpoint_and_fails_what_waits_for_it(serve):
    """410 Gone: no retry, the endpoint is disabled, later sends are refused."""
    server = serve()
    api = Api(server)
    with Receiver(statuses=[410]) as receiver:
        endpoint = api.add(receiver.url)
        receiver.secret = endpoint["secret"]
        sent = api.send("user.created", {"id": 1})
        api.wait_for(sent["id"], "failed")
        listed = api.client.get("/v1/webhooks/endpoints").json()["endpoints"]
        assert listed[0]["state"] == "disabled"
        assert listed[0]["disabled_reason"] == "410 Gone"
        refused = api.client.post(
            "/v1/webhooks/messages",
            json={"event_type": "a", "payload": {}, "endpoint_id": endpoint["id"]},
        )
        assert refused.status_code == 409
        assert refused.json()["error"] == "endpoint_disabled"
        fanned = api.send("user.created", {"id": 2})
        assert fanned["deliveries"] == []
    assert len(receiver.attempts) == 1
    failed = api.client.get("/v1/webhooks/messages", params={"state": "failed"}).json()
    assert [m["id"] for m in failed["messages"]] == [sent["id"]]


def test_a_redirect_is_never_followed(serve):
    """A 302 is a failed attempt: the Location is not visited, the retry is."""
    server = serve()
    api = Api(server)
    with Receiver() as receiver:
        elsewhere = f"http://127.0.0.1:{receiver.port}/elsewhere"
        receiver.statuses = [(302, {"location": elsewhere})]
        receiver.secret = api.add(receiver.url)["secret"]
        sent = api.send("user.created", {})
        shown = api.wait_for(sent["id"], "delivered")
    assert receiver.elsewhere == []
    assert [a["status"] for a in shown["deliveries"][0]["history"]] == [302, 204]


def test_fifty_messages_survive_a_sigkill_and_are_all_delivered_after_restart(
    serve,
):
    """SIGKILL with 50 accepted messages, some in flight: the restarted service
    delivers every one (at least once), nothing lost."""
    server = serve()
    api = Api(server)
    with Receiver(hold=30) as receiver:
        receiver.secret = api.add(receiver.url)["secret"]
        ids = {api.send("order.paid", {"n": n})["id"] for n in range(50)}
        deadline = time.monotonic() + 20
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.requests, "no attempt was in flight"
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait()
        receiver.hold = 0
        receiver.release.set()
        restarted = serve()
        api = Api(restarted)
        # Claims of the killed process lapse (20 s), then they are taken over.
        for message_id in ids:
            api.wait_for(message_id, "delivered", seconds=60)
    assert ids <= receiver.ids()


def test_a_private_destination_is_refused_unless_allowed(serve, tmp_path):
    """Registration refuses loopback; a destination allowed before is refused on
    the connection once the service runs without the permission."""
    with Receiver() as receiver:
        server = serve()
        api = Api(server)
        endpoint = api.add(receiver.url)
        receiver.secret = endpoint["secret"]
        server.stop()
        strict = serve(env={"ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "0"})
        api = Api(strict)
        refused = api.client.post(
            "/v1/webhooks/endpoints", json={"url": "http://127.0.0.1:9/hooks"}
        )
        assert refused.status_code == 422
        assert refused.json()["field"] == "url"
        sent = api.send("user.created", {}, endpoint_id=endpoint["id"])
        deadline = time.monotonic() + 20
        history = []
        while not history and time.monotonic() < deadline:
            history = api.message(sent["id"])["deliveries"][0]["history"]
            time.sleep(0.05)
        assert "not a public address" in history[0]["error"]
        assert history[0]["status"] is None
    assert receiver.requests == []


def test_a_rotated_endpoint_is_signed_with_both_secrets(serve):
    """During the overlap each secret alone verifies the delivery."""
    server = serve()
    api = Api(server)
    with Receiver() as receiver:
        endpoint = api.add(receiver.url)
        rotated = api.client.post(f"/v1/webhooks/endpoints/{endpoint['id']}/rotate")
        assert rotated.status_code == 200
        new = rotated.json()["secret"]
        assert new != endpoint["secret"]
        assert len(rotated.json()["previous_secrets_until"]) == 1
        receiver.secrets = [endpoint["secret"], new]
        sent = api.send("user.created", {})
        api.wait_for(sent["id"], "delivered")
    [(headers, _)] = receiver.requests
    assert len(headers["webhook-signature"].split()) == 2


def test_redelivery_sends_the_same_id_again(serve):
    """POST …/redeliver delivers a delivered message again under its id."""
    server = serve()
    api = Api(server)
    with Receiver() as receiver:
        receiver.secret = api.add(receiver.url)["secret"]
        sent = api.send("user.created", {"id": 1})
        api.wait_for(sent["id"], "delivered")
        again = api.client.post(f"/v1/webhooks/messages/{sent['id']}/redeliver")
        assert again.status_code == 202
        assert again.json()["id"] == sent["id"]
        deadline = time.monotonic() + 20
        while len(receiver.attempts) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [i for i, _ in receiver.attempts] == [sent["id"], sent["id"]]
    assert len(api.message(sent["id"])["deliveries"][0]["history"]) == 2


def test_messages_fan_out_by_event_type(serve):
    """Each receiver gets the types it subscribed to; one subscribed to none of
    them gets nothing."""
    server = serve()
    api = Api(server)
    with Receiver() as users, Receiver() as orders:
        users.secret = api.add(users.url, event_types=["user.created"])["secret"]
        orders.secret = api.add(orders.url, event_types=["order.paid"])["secret"]
        user = api.send("user.created", {"id": 1})
        order = api.send("order.paid", {"id": 2})
        api.wait_for(user["id"], "delivered")
        api.wait_for(order["id"], "delivered")
    assert [i for i, _ in users.attempts] == [user["id"]]
    assert [i for i, _ in orders.attempts] == [order["id"]]


def test_the_webhook_api_refuses_bad_requests_with_stable_codes(serve):
    """Scopes, unknown ids, malformed bodies: typed 4xx answers, never a 5xx."""
    server = serve()
    api = Api(server)
    reader = Api(server, "--scope", "webhooks:read")
    assert (
        reader.client.post(
            "/v1/webhooks/messages", json={"event_type": "a", "payload": {}}
        ).status_code
        == 403
    )
    writer = Api(server, "--scope", "webhooks:write")
    assert writer.client.get("/v1/webhooks/endpoints").status_code == 403
    cases = [
        ("GET", "/v1/webhooks/messages/msg_nope", None, 404, "not_found"),
        ("POST", "/v1/webhooks/messages/msg_nope/redeliver", None, 404, "not_found"),
        ("DELETE", "/v1/webhooks/endpoints/ep_nope", None, 404, "not_found"),
        ("POST", "/v1/webhooks/endpoints/ep_nope/rotate", None, 404, "not_found"),
        ("POST", "/v1/webhooks/endpoints", {"url": 5}, 422, "invalid_request"),
        (
            "POST",
            "/v1/webhooks/endpoints",
            {"url": "https://a.example", "x": 1},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/webhooks/messages",
            {"event_type": "a b", "payload": {}},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/webhooks/messages",
            {"event_type": "a", "payload": []},
            422,
            "invalid_request",
        ),
        (
            "POST",
            "/v1/webhooks/messages",
            {"event_type": "a", "payload": {}, "endpoint_id": "ep_x"},
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/webhooks/messages",
            {"event_type": "a", "payload": {}, "id": "bad id"},
            422,
            "invalid_request",
        ),
    ]
    for method, path, body, status, code in cases:
        answer = api.client.request(method, path, json=body)
        assert (answer.status_code, answer.json()["error"]) == (status, code), path
    for query in ({"state": "lost"}, {"limit": "0"}, {"limit": "x"}, {"limit": "101"}):
        answer = api.client.get("/v1/webhooks/messages", params=query)
        assert answer.status_code == 422, query
    huge = api.client.post(
        "/v1/webhooks/messages",
        content=b'{"event_type":"a","payload":{"x":"' + b"a" * 70_000 + b'"}}',
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert api.client.get("/v1/webhooks/messages").json()["messages"] == []


def test_the_cli_registers_sends_shows_attempts_and_redelivers(serve):
    """`actionlinks webhooks …` against the database the running service uses."""
    server = serve()
    with Receiver() as receiver:
        added = json.loads(
            server.cli("webhooks", "endpoints", "add", receiver.url, "--json").stdout
        )
        receiver.secret = added["secret"]
        listing = server.cli("webhooks", "endpoints").stdout
        assert added["id"] in listing
        assert added["secret"] not in listing
        sent = json.loads(
            server.cli(
                "webhooks", "send", "user.created", "--payload", '{"id": 3}', "--json"
            ).stdout
        )
        deadline = time.monotonic() + 20
        while not receiver.attempts and time.monotonic() < deadline:
            time.sleep(0.05)
        shown = server.cli("webhooks", "attempts", sent["id"]).stdout
        assert "delivered" in shown
        assert "HTTP 204" in shown
        server.cli("webhooks", "redeliver", sent["id"])
        while len(receiver.attempts) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        listed = server.cli("webhooks", "messages").stdout
        assert sent["id"] in listed
    assert [i for i, _ in receiver.attempts] == [sent["id"], sent["id"]]
    missing = subprocess.run(
        [str(SCRIPT), "webhooks", "attempts", "msg_nope"],
        env=server.env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == "actionlinks: error: no message with this id"


def test_a_queued_link_use_is_answered_at_once_and_delivered_with_retries(
    serve, tmp_path
):
    """delivery = "queued": the person sees success although the app answers 503
    first; the link.used event arrives later under one id."""
    with Receiver(statuses=[503]) as receiver:
        receiver.secret = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        (tmp_path / "actionlinks.toml").write_text(
            "[actions.invite]\n"
            f'handler_url = "{receiver.url}"\n'
            f'handler_secret = "{receiver.secret}"\n'
            'delivery = "queued"\n'
        )
        (tmp_path / "actionlinks.toml").chmod(0o600)
        server = serve()
        url = server.mint("invite")
        with httpx.Client(timeout=20) as client:
            page = client.get(url, headers={"Accept": "application/json"}).json()
            assert client.post(url, data={"nonce": page["nonce"]}).status_code == 200
        deadline = time.monotonic() + 20
        while len(receiver.attempts) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    [(first, s1), (second, s2)] = receiver.attempts
    assert (s1, s2) == (503, 204)
    assert first == second
    assert receiver.events[0]["type"] == "link.used"
    assert receiver.events[0]["data"]["action"] == "invite"
