"""The README's library-mode snippet, run as written under a real uvicorn
(issue 6, items 4 and 19): Python handlers and handler_url webhooks both work
from a mounted app whose lifespan opens the service."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from servers import SCRIPT, Receiver, clean_env, free_port

from actionlinks.webhooks import generate_secret

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def library_snippet() -> str:
    text = README.read_text()
    section = text.split("### Library mode", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def wait_until_up(url, process, log):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(log.read_text())
        try:
            httpx.get(url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
        else:
            return
    raise RuntimeError(log.read_text())


def test_readme_library_mode_runs_as_written(tmp_path):
    """The snippet serves links under /links; both kinds of handler run."""
    (tmp_path / "app.py").write_text(library_snippet())
    port = free_port()
    base = f"http://127.0.0.1:{port}/links"
    env = clean_env(
        ACTIONLINKS_HOME=str(tmp_path),
        ACTIONLINKS_BASE_URL=base,
        ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE="1",
    )
    subprocess.run([str(SCRIPT), "init"], env=env, check=True, capture_output=True)
    secret = generate_secret()
    with Receiver(secret) as receiver:
        with (tmp_path / "actionlinks.toml").open("a") as config:
            config.write(
                f'[actions.invite]\nhandler_url = "{receiver.url}"\n'
                f'handler_secret = "{secret}"\n'
            )
        log = tmp_path / "uvicorn.log"
        with log.open("wb") as output:
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "app:app",
                    "--no-access-log",
                    "--port",
                    str(port),
                ],
                cwd=tmp_path,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until_up(f"{base}/healthz", server, log)
            with httpx.Client(timeout=20) as client:
                url = client.post(
                    f"http://127.0.0.1:{port}/signup",
                    params={"email": "ada@example.com"},
                ).text
                assert url.startswith(f"{base}/a/")
                confirmed = confirm(client, url)
                invite = subprocess.run(
                    [str(SCRIPT), "mint", "invite", "--sub", "grace"],
                    env=env,
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                invited = confirm(client, invite)
        finally:
            server.terminate()
            server.wait(timeout=20)
    output = log.read_text()
    assert (confirmed, invited) == (200, 200), output
    assert "confirmed ada@example.com" in output
    assert [e["data"]["sub"] for e in receiver.events] == ["grace"]
    assert "Traceback" not in output
    assert url.rsplit("/", 1)[1].split(".")[2] not in output


def test_readme_says_how_to_run_the_snippet():
    """The snippet's run command turns uvicorn's token-printing access log off."""
    snippet = library_snippet()
    assert "uvicorn app:app --no-access-log" in snippet
    assert "actionlinks init" in snippet


def confirm(client, url):
    page = client.get(url, headers={"Accept": "application/json"}).json()
    return client.post(url, data={"nonce": page["nonce"]}).status_code


def receiving_snippet() -> str:
    section = README.read_text().split("### Receiving webhooks", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_receiving_snippet_runs_as_written(tmp_path, monkeypatch, capsys):
    """The receiving end verifies a signed message once and refuses the replay."""
    import runpy

    from starlette.testclient import TestClient

    from actionlinks.webhooks import secret_bytes, signature_headers

    secret = generate_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    (tmp_path / "hooks.py").write_text(receiving_snippet())
    app = runpy.run_path(str(tmp_path / "hooks.py"))["app"]
    body = b'{"type":"link.used","data":{"sub":"ada@example.com"}}'
    headers = signature_headers(
        secret_bytes(secret),
        message_id="msg_readme",
        timestamp=int(time.time()),  # noqa: TID251 - the snippet reads real time
        body=body,
    )
    with TestClient(app) as client:
        first = client.post("/hooks", content=body, headers=headers)
        again = client.post("/hooks", content=body, headers=headers)
        forged = client.post("/hooks", content=body + b" ", headers=headers)
    assert (first.status_code, again.status_code, forged.status_code) == (204, 200, 401)
    assert capsys.readouterr().out == "link.used ada@example.com\n"
