"""A Starlette endpoint for apps that receive webhooks from actionlinks.

:class:`WebhookReceiver` reads the raw body (capped), verifies it with a
:class:`~actionlinks.webhooks.receiving.WebhookVerifier`, refuses a replayed
message id, and only then calls your handler::

    verifier = WebhookVerifier(secrets=os.environ["ACTIONLINKS_WEBHOOK_SECRET"])

    async def handle(webhook, request):
        event = json.loads(webhook.body)
        ...  # your work; raise, or return a non-2xx response, to be retried

    app = Starlette(routes=[
        Route("/hooks", WebhookReceiver(verifier, handle), methods=["POST"])
    ])

Answers: 401 ``invalid_webhook`` for anything not authentic (the reason goes
to the log only), 413 over the size cap, 200 ``duplicate`` for a message
already handled (the handler does not run again), 409 ``in_progress`` (with
``Retry-After``) while another request handles the same message, else your
handler's response (204 when it returns ``None``). A message whose handler
raised or answered non-2xx is forgotten, so the sender's retry is handled.
A request cancelled once its handler ran still records the message as handled
(the bookkeeping runs to its end in a task of its own, see
:mod:`actionlinks.settle`), so a retry never runs the handler again.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from actionlinks.beats import while_beating
from actionlinks.errors import WebhookVerificationError
from actionlinks.settle import Settler
from actionlinks.webhooks.receiving import IN_PROGRESS, Claim, MemoryReplayGuard

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import Receive, Scope, Send

    from actionlinks.webhooks.received import ReceivedWebhook
    from actionlinks.webhooks.receiving import ReplayGuard, WebhookVerifier

    WebhookHandler = Callable[[ReceivedWebhook, Request], Awaitable[Response | None]]

_log = logging.getLogger("actionlinks.receiver")
MAX_BODY_BYTES = 1024 * 1024
REMEMBER_FOR = timedelta(days=8)
"""A person may retry a link's use until it expires and renew it for 7 days."""
KEEP_EVERY = timedelta(minutes=1)


class WebhookReceiver:
    """An ASGI endpoint that verifies webhooks before ``handler`` sees them.

    Args:
        verifier: checks signatures and timestamps.
        handler: runs once per authentic, new message.
        replays: remembers handled message ids (a bounded memory by default;
            ``LedgerReplayGuard(service.ledger)`` to share it between
            processes).
        max_body: the largest body accepted, in bytes.
        remember_for: how long a handled message id is remembered: at least as
            long as the sender may retry it (a person retrying a link's use
            sends the same id again, much later).
    """

    def __init__(
        self,
        verifier: WebhookVerifier,
        handler: WebhookHandler,
        *,
        replays: ReplayGuard | None = None,
        max_body: int = MAX_BODY_BYTES,
        remember_for: timedelta = REMEMBER_FOR,
    ) -> None:
        """Bind the verifier, the handler and the replay memory."""
        self._verifier = verifier
        self._handler = handler
        self._replays: ReplayGuard = replays or MemoryReplayGuard()
        self._max_body = max_body
        self._remember_for = remember_for
        self._settler = Settler()

    def __repr__(self) -> str:
        """Name the verifier."""
        return f"WebhookReceiver({self._verifier!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one request."""
        request = Request(scope, receive)
        response = await self._respond(request)
        await response(scope, receive, send)

    async def _respond(self, request: Request) -> Response:
        body = await self._body(request)
        if body is None:
            return _error(413, "body_too_large")
        try:
            webhook = self._verifier.verify(request.headers, body)
        except WebhookVerificationError as exc:
            _log.warning("webhook refused (%s): %s", exc.reason, exc)
            return _error(401, "invalid_webhook")
        # Remembered for longer than any timestamp could still pass, and for as
        # long as the sender may retry.
        until = max(
            webhook.timestamp + 2 * self._verifier.tolerance + timedelta(minutes=1),
            webhook.timestamp + self._remember_for,
        )
        message_id = webhook.message_id
        claim = await self._settler.run(
            self._replays.claim(message_id, until=until),
            abandoned=lambda taken: self._settled(message_id, taken, handled=False),
        )
        if claim == IN_PROGRESS:  # not a success: the sender must try again
            return JSONResponse(
                {"error": "in_progress"}, status_code=409, headers={"Retry-After": "5"}
            )
        if not isinstance(claim, Claim):
            _log.info("webhook %s seen before; not handled again", webhook.message_id)
            return JSONResponse({"status": "duplicate"})
        handled = False
        try:
            response = await self._while_holding(webhook, request, claim)
            handled = 200 <= response.status_code < 300
        finally:
            await self._settler.run(self._settled(message_id, claim, handled=handled))
        return response

    async def _settled(self, message_id: str, claim: object, *, handled: bool) -> None:
        """Record a claimed message as handled, or forget it for a retry."""
        if not isinstance(claim, Claim):
            return
        if handled:
            await self._replays.done(message_id, claim)
        else:
            await self._replays.forget(message_id, claim)

    async def _while_holding(
        self, webhook: ReceivedWebhook, request: Request, claim: Claim
    ) -> Response:
        """Run the handler, renewing the claim meanwhile; its response."""

        async def keep() -> None:
            await self._replays.keep(webhook.message_id, claim)

        response = await while_beating(
            self._handler(webhook, request), keep, every=KEEP_EVERY
        )
        if response is None:
            return Response(status_code=204)
        if not isinstance(response, Response):
            raise TypeError("a webhook handler returns a Response or None")
        return response

    async def _body(self, request: Request) -> bytes | None:
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > self._max_body:
            return None
        body = bytearray()
        try:
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > self._max_body:
                    return None
        except ClientDisconnect:
            return b""  # verification refuses it
        return bytes(body)


def _error(status: int, code: str) -> Response:
    return JSONResponse({"error": code}, status_code=status)
