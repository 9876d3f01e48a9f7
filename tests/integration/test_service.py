"""A real `actionlinks serve` process under uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess

import httpx
import pytest
from servers import SCRIPT, Receiver, ServeProcess, clean_env, serve_with_handler
from support import rejection_cases

from actionlinks.keyfile import load_keyring
from actionlinks.webhooks import generate_secret

pytestmark = pytest.mark.integration

NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("serve")
    process = ServeProcess(home, workers=2)
    yield process
    log = process.stop()
    assert "Traceback" not in log


def path_of(url):
    return url.split("://", 1)[1].split("/", 1)[1]


def test_serve_initialises_an_empty_home_and_says_how_to_start(server):
    """An empty home is initialised; the banner says where and how to mint."""
    banner = server.log.read_text()
    assert f"initialised {server.home}" in banner
    assert f"http://127.0.0.1:{server.port}" in banner
    assert "actionlinks mint" in banner
    assert (server.home / "keys.json").exists()


def test_get_and_head_100_times_then_one_post_succeeds(server):
    """Scanner traffic never consumes; the person's POST then works."""
    url = server.mint("email-confirm")
    with httpx.Client(timeout=10) as client:
        for _ in range(50):
            assert client.get(url).status_code == 200
            assert client.head(url).status_code == 200
        nonce = NONCE.search(client.get(url).text).group(1)
        done = client.post(url, data={"nonce": nonce})
        assert done.status_code == 200
        assert "confirmed" in done.text
        again = client.get(url)
        assert again.status_code == 409
        assert "already used" in again.text


async def test_fifty_concurrent_posts_of_one_link_succeed_exactly_once(server):
    """Across two worker processes, exactly one of 50 concurrent POSTs is 2xx."""
    url = server.mint("invite")
    async with httpx.AsyncClient(timeout=30) as client:
        nonce = NONCE.search((await client.get(url)).text).group(1)
        responses = await asyncio.gather(
            *(client.post(url, data={"nonce": nonce}) for _ in range(50))
        )
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 1
    assert codes == [200] + [409] * 49


def test_every_rejection_case_is_a_4xx_and_consumes_nothing(server):
    """The foundation's hostile tokens over real HTTP: 4xx, never 5xx."""
    url = server.mint("email-confirm")
    token = url.rsplit("/", 1)[1]
    key = load_keyring(server.home / "keys.json").signing_key("HS256")
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for name, forged in rejection_cases(token, key).items():
            for method in ("GET", "HEAD", "POST"):
                response = client.request(method, f"/a/{forged}", data={"nonce": "x"})
                assert 400 <= response.status_code < 500, (name, method)
        nonce = NONCE.search(client.get(url).text).group(1)
        assert client.post(url, data={"nonce": nonce}).status_code == 200


def test_megabyte_token_is_refused_by_the_server(server):
    """A 1 MB request line never reaches the app and never yields a 5xx."""
    request = f"GET /a/{'A' * 1_000_000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        try:
            sock.sendall(request)
            answer = sock.recv(200).decode("latin-1")
        except ConnectionResetError:
            answer = ""
    if answer:
        status = int(answer.split()[1])
        assert 400 <= status < 500
    with httpx.Client() as client:
        assert client.get(f"{server.base_url}/healthz").status_code == 200


def test_rfc8058_one_click_unsubscribe(server):
    """List-Unsubscribe=One-Click works, urlencoded or multipart, repeatedly."""
    url = server.mint("unsubscribe", "a@example.test")
    with httpx.Client(timeout=10) as client:
        first = client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert first.status_code == 200
        assert "set-cookie" not in first.headers
        second = client.post(url, files={"List-Unsubscribe": (None, "One-Click")})
        assert second.status_code == 200
        assert second.is_redirect is False


def test_host_header_cannot_change_a_minted_url(server):
    """Links come from ACTIONLINKS_BASE_URL whatever Host the request carries."""
    token = server.cli("tokens", "issue", "--scope", "links:write").stdout.strip()
    with httpx.Client(timeout=10) as client:
        response = client.post(
            f"{server.base_url}/v1/links",
            json={"action": "password-reset", "sub": "user:42"},
            headers={
                "Authorization": f"Bearer {token}",
                "Host": "evil.example",
                "X-Forwarded-Host": "evil.example",
            },
        )
    assert response.status_code == 201
    assert response.json()["url"].startswith(f"{server.base_url}/a/")


def test_api_scopes_and_authentication(server):
    """401 with a Bearer challenge without a token, 403 for a missing scope."""
    reader = json.loads(
        server.cli("tokens", "issue", "--scope", "links:read", "--json").stdout
    )
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        missing = client.post("/v1/links", json={"action": "invite", "sub": "u"})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        headers = {"Authorization": f"Bearer {reader['token']}"}
        forbidden = client.post(
            "/v1/links", json={"action": "invite", "sub": "u"}, headers=headers
        )
        assert forbidden.status_code == 403
        assert client.get("/v1/links/nope", headers=headers).status_code == 404
        server.cli("tokens", "revoke", reader["jti"])
        assert client.get("/v1/links/nope", headers=headers).status_code == 401


def test_jwks_healthz_metrics_and_openapi_are_served(server):
    """The service routes answer on the real server."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        assert len(client.get("/.well-known/jwks.json").json()["keys"]) == 2
        assert client.get("/healthz").json() == {"status": "ok"}
        token = server.cli("tokens", "issue", "--scope", "metrics:read").stdout.strip()
        assert client.get("/metrics").status_code == 401
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert "actionlinks_request_duration_seconds" in metrics.text
        assert client.get("/openapi.json").json()["openapi"].startswith("3.")


def test_tokens_never_appear_in_the_server_log(server):
    """The access log shows /a/… only; no token reaches the log."""
    url = server.mint("invite")
    token = url.rsplit("/", 1)[1]
    with httpx.Client(timeout=10) as client:
        client.get(url)
        client.get(url + "x")
    log = server.log.read_text()
    assert "/a/…" in log
    assert token.split(".")[1] not in log
    assert token.split(".")[2] not in log


def test_handler_url_receives_a_signed_webhook_and_failures_release(tmp_path):
    """Standalone dispatch: a 500 from the app says retry; a 2xx completes it."""
    secret = generate_secret()
    with Receiver(secret, statuses=[500, 204]) as receiver:
        server = serve_with_handler(tmp_path, receiver, "email-confirm")
        try:
            url = server.mint("email-confirm", "a@example.test")
            with httpx.Client(timeout=20) as client:
                nonce = NONCE.search(client.get(url).text).group(1)
                failed = client.post(url, data={"nonce": nonce})
                assert failed.status_code == 502
                assert "try again" in failed.text
                assert receiver.events == []
                done = client.post(url, data={"nonce": nonce})
                assert done.status_code == 200
        finally:
            server.stop()
    (event,) = receiver.events
    assert event["type"] == "link.used"
    assert event["data"]["sub"] == "a@example.test"
    assert event["data"]["action"] == "email-confirm"


def test_serve_refuses_bad_arguments_without_a_traceback(tmp_path):
    """Usage errors exit 2 with one message."""
    result = subprocess.run(
        [str(SCRIPT), "serve", "--port", "70000"],
        env=clean_env(ACTIONLINKS_HOME=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
