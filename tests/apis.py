"""The service's HTTP APIs as the tests use them, with tokens of given scopes."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from servers import ServeProcess

WEBHOOK_SCOPES = ("--scope", "webhooks:write", "--scope", "webhooks:read")
MAIL_SCOPES = ("--scope", "mail:send", "--scope", "mail:read")


class Api:
    """The service's webhook API with a webhooks:read+write token."""

    def __init__(self, server: ServeProcess, *scopes: str):
        token = server.cli(
            "tokens", "issue", *(scopes or WEBHOOK_SCOPES)
        ).stdout.strip()
        self.client = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
        )
        server.clients.append(self.client)

    def add(self, url: str, **fields) -> dict:
        answer = self.client.post("/v1/webhooks/endpoints", json={"url": url, **fields})
        assert answer.status_code == 201, answer.text
        return answer.json()

    def send(self, event_type: str, payload: dict, **fields) -> dict:
        answer = self.client.post(
            "/v1/webhooks/messages",
            json={"event_type": event_type, "payload": payload, **fields},
        )
        assert answer.status_code == 202, answer.text
        return answer.json()

    def message(self, message_id: str) -> dict:
        answer = self.client.get(f"/v1/webhooks/messages/{message_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait_for(self, message_id: str, state: str, seconds: float = 30) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = self.message(message_id)
            if found["state"] == state:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{message_id} is {found['state']}, not {state}: {found}")


class MailApi:
    """The service's mail API with a token of the given scopes."""

    def __init__(self, server: ServeProcess, *scopes: str):
        token = server.cli("tokens", "issue", *(scopes or MAIL_SCOPES)).stdout.strip()
        self.client = httpx.Client(
            base_url=server.base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=20,
        )
        server.clients.append(self.client)

    def send(self, action: str, to: str, sub: str = "user:42", **fields) -> dict:
        answer = self.client.post(
            "/v1/emails", json={"action": action, "to": to, "sub": sub, **fields}
        )
        assert answer.status_code == 202, answer.text
        return answer.json()

    def mail(self, mail_id: str) -> dict:
        answer = self.client.get(f"/v1/emails/{mail_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()

    def wait_for(self, mail_id: str, state: str, seconds: float = 30) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = self.mail(mail_id)
            if found["state"] == state:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{mail_id} is {found['state']}, not {state}: {found}")
