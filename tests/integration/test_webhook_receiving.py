"""Issue 7: a real `actionlinks serve` announces link uses to a real receiver
built with the receiver helper, which verifies the Standard Webhooks signature
and, separately, the JWT header against the JWKS the service publishes."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import uvicorn
from servers import ServeProcess, free_port
from starlette.applications import Starlette
from starlette.routing import Route

from actionlinks.receiver import WebhookReceiver
from actionlinks.webhooks import WebhookVerifier, generate_secret

pytestmark = pytest.mark.integration


class Apps:
    """Receivers on 127.0.0.1 whose verifiers are set once the service is up."""

    def __init__(self):
        self.port = free_port()
        self.received = []
        self.verifiers = {}

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def app(self):
        async def handle(webhook, request):
            self.received.append((request.url.path, webhook))

        apps = self

        class Later:
            """An ASGI app whose verifier is known only once the service runs."""

            def __init__(self, name):
                self.name = name

            async def __call__(self, scope, receive, send):
                receiver = WebhookReceiver(apps.verifiers[self.name], handle)
                await receiver(scope, receive, send)

        return Starlette(
            routes=[
                Route(f"/{name}", Later(name), methods=["POST"])
                for name in ("hmac", "jwt")
            ]
        )

    def __enter__(self):
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc_info):
        self.server.should_exit = True
        self.thread.join(timeout=10)


def confirm(url):
    with httpx.Client(timeout=20) as client:
        page = client.get(url, headers={"Accept": "application/json"}).json()
        return client.post(url, data={"nonce": page["nonce"]}).status_code


def test_uses_verify_by_secret_and_by_jwt_against_the_jwks(tmp_path):
    """The receiver helper accepts each use, once, by v1 and by the JWT alone."""
    hmac_secret, jwt_secret = generate_secret(), generate_secret()
    with Apps() as apps:
        (tmp_path / "actionlinks.toml").write_text(
            f'[actions.invite]\nhandler_url = "{apps.url("hmac")}"\n'
            f'handler_secret = "{hmac_secret}"\n'
            f'[actions.email-confirm]\nhandler_url = "{apps.url("jwt")}"\n'
            f'handler_secret = "{jwt_secret}"\n'
        )
        (tmp_path / "actionlinks.toml").chmod(0o600)
        server = ServeProcess(tmp_path, env={"ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1"})
        try:
            jwks = httpx.get(f"{server.base_url}/.well-known/jwks.json").json()
            apps.verifiers["hmac"] = WebhookVerifier(secrets=hmac_secret)
            apps.verifiers["jwt"] = WebhookVerifier(
                jwks=jwks, audience=apps.url("jwt"), issuer=server.base_url
            )
            assert confirm(server.mint("invite")) == 200
            assert confirm(server.mint("email-confirm")) == 200
        finally:
            server.stop()
    assert [(path, w.scheme) for path, w in apps.received] == [
        ("/hmac", "v1"),
        ("/jwt", "jwt"),
    ]
