"""`actionlinks serve` as an operator meets it (issue 6): keys changed under a
running service, start-up validation, the base URL, and what the log says."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import httpx
import pytest
from servers import SCRIPT, Receiver, ServeProcess, clean_env, free_port

from actionlinks.webhooks import generate_secret

pytestmark = pytest.mark.integration

RELOAD_SECONDS = 5.0


def run(home, *args, env=None, timeout=60):
    return subprocess.run(
        [str(SCRIPT), *args],
        env=clean_env(ACTIONLINKS_HOME=str(home), **(env or {})),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def every_worker_answers(url, status, *, headers=None, tries=20):
    """``tries`` fresh connections (spread over the workers) all get ``status``."""
    for _ in range(tries):
        with httpx.Client(timeout=10) as client:  # a new connection each time
            if client.get(url, headers=headers).status_code != status:
                return False
    return True


def within_reload_time(check):
    deadline = time.monotonic() + RELOAD_SECONDS
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_rotated_and_retired_keys_reach_every_worker_within_seconds(tmp_path):
    """Item 3: 2 workers; rotate → new links and tokens work; retire → old die."""
    server = ServeProcess(tmp_path, workers=2)
    try:
        old_link = server.mint("invite")
        old_kid = json.loads(server.cli("keys", "list", "--json").stdout)[0]["kid"]
        server.cli("keys", "rotate", "--alg", "HS256")
        new_link = server.mint("invite")
        token = server.cli(
            "tokens", "issue", "--scope", "links:write", "--scope", "links:read"
        ).stdout.strip()
        api = f"{server.base_url}/v1/links/nope"
        bearer = {"Authorization": f"Bearer {token}"}
        assert within_reload_time(
            lambda: (
                every_worker_answers(new_link, 200)
                and every_worker_answers(api, 404, headers=bearer)
            )
        )
        assert every_worker_answers(old_link, 200)
        server.cli("keys", "retire", old_kid)
        assert within_reload_time(lambda: every_worker_answers(old_link, 400))
        with httpx.Client(timeout=10) as client:
            minted = client.post(
                f"{server.base_url}/v1/links",
                json={"action": "invite", "sub": "u"},
                headers=bearer,
            ).json()
        assert minted["kid"] != old_kid
    finally:
        log = server.stop()
    assert "Traceback" not in log


def test_serve_without_a_base_url_builds_links_for_its_own_port(tmp_path):
    """Item 16: a fresh home served on --port P mints links for port P."""
    server = ServeProcess(tmp_path, base_url=False)
    try:
        url = server.mint("email-confirm")
        assert url.startswith(f"http://127.0.0.1:{server.port}/a/")
        with httpx.Client(timeout=10) as client:
            assert client.get(url).status_code == 200
    finally:
        server.stop()
    config = (tmp_path / "actionlinks.toml").read_text()
    assert f'base_url = "http://127.0.0.1:{server.port}"' in config
    assert f'issuer = "http://127.0.0.1:{server.port}"' in config


def test_banner_says_when_links_point_elsewhere(tmp_path):
    """Item 16: a configured base URL unlike the listening address is named."""
    assert (
        run(tmp_path, "init", "--base-url", "https://links.example.com").returncode == 0
    )
    server = ServeProcess(tmp_path, base_url=False)
    try:
        banner = server.log.read_text()
    finally:
        server.stop()
    assert "links point to https://links.example.com" in banner


def test_serve_warns_about_actions_that_do_nothing(tmp_path):
    """Item 15: built-in actions without a handler are named at start-up."""
    server = ServeProcess(tmp_path)
    log = server.stop()
    assert "actions without a handler, handler_url or redirect" in log
    assert "email-confirm" in log


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ('[actions.invite]\nhandler_url = "https://app.example/h"\n', "handler_secret"),
        (
            (
                '[actions.invite]\nhandler_url = "https://app.example/h"\n'
                'handler_secret = "s3cret-not-whsec"\n'
            ),
            "whsec_",
        ),
        (
            (
                '[actions.invite]\nhandler_url = "https://[::1/h"\n'
                f'handler_secret = "{generate_secret()}"\n'
            ),
            "not a valid URL",
        ),
        (
            (
                '[actions.invite]\nhandler_url = "http://app.example/h"\n'
                f'handler_secret = "{generate_secret()}"\n'
            ),
            "https",
        ),
        ('[actions.invite]\nredirect = "https://evil.example/x"\n', "redirect"),
        (
            (
                '[actions.invite]\nhandler_url = "http://localhost:9/h"\n'
                f'handler_secret = "{generate_secret()}"\n'
            ),
            "webhook_allow_private = true in actionlinks.toml",
        ),
    ],
)
def test_bad_handler_configuration_stops_serve_with_one_line(tmp_path, config, words):
    """Item 8: a bad handler config is exit 2, one line, before any banner."""
    assert run(tmp_path, "init").returncode == 0
    with (tmp_path / "actionlinks.toml").open("a") as handle:
        handle.write(config)
    result = run(tmp_path, "serve", "--port", str(free_port()))
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert words in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr


def test_port_in_use_and_unknown_host_are_one_line_exit_2(tmp_path):
    """Item 8: no uvicorn traceback, no banner, exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = run(tmp_path, "serve", "--port", str(port))
    unknown = run(tmp_path, "serve", "--host", "no-such-host.invalid")
    for result in (busy, unknown):
        assert result.returncode == 2, result.stderr
        assert "serving" not in result.stdout
        assert result.stderr.startswith("actionlinks: error: cannot listen on")
        assert result.stderr.count("\n") == 1


def test_unavailable_database_is_exit_3(tmp_path):
    """Item 8: exit 3 only for a database that cannot be opened."""
    result = run(
        tmp_path,
        "serve",
        "--port",
        str(free_port()),
        env={"ACTIONLINKS_DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/x.db"},
    )
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("actionlinks: unavailable:")
    assert "Traceback" not in result.stderr


def test_one_use_keeps_one_webhook_id_across_the_retry(tmp_path):
    """Item 6: the failed attempt and the person's retry carry the same id."""
    secret = generate_secret()
    with Receiver(secret, statuses=[500, 204]) as receiver:
        (tmp_path / "actionlinks.toml").write_text(
            f'[actions.invite]\nhandler_url = "{receiver.url}"\n'
            f'handler_secret = "{secret}"\n'
        )
        (tmp_path / "actionlinks.toml").chmod(0o600)
        server = ServeProcess(tmp_path, env={"ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1"})
        try:
            url = server.mint("invite")
            with httpx.Client(timeout=20) as client:
                page = client.get(url, headers={"Accept": "application/json"}).json()
                first = client.post(url, data={"nonce": page["nonce"]})
                second = client.post(url, data={"nonce": page["nonce"]})
        finally:
            server.stop()
    assert (first.status_code, second.status_code) == (502, 200)
    (failed, failed_status), (done, done_status) = receiver.attempts
    assert (failed_status, done_status) == (500, 204)
    assert failed == done


def test_an_endless_request_header_is_cut_off_and_the_worker_keeps_serving(tmp_path):
    """A client trickling one header forever gets an error and a closed socket.

    Its bytes are not buffered without bound (httptools did: 64 MiB of one header
    grew the worker by 64 MiB and held its event loop for seconds), and other
    requests are answered meanwhile.
    """
    server = ServeProcess(tmp_path)
    try:
        hostile = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        hostile.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        chunk = b"a" * 65536
        answer = b""
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                hostile.sendall(chunk)
                sent += len(chunk)
                hostile.settimeout(0)
                try:
                    answer = hostile.recv(4096)
                except BlockingIOError:
                    answer = b""
                finally:
                    hostile.settimeout(10)
                if answer:
                    break
        except OSError:
            pass  # the server closed the connection: what we want
        finally:
            hostile.close()
        assert sent < 8 * 1024 * 1024, "the server took megabytes of one header"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 4")
        with httpx.Client(timeout=10) as client:
            assert client.get(f"{server.base_url}/healthz").status_code == 200
    finally:
        server.stop()
