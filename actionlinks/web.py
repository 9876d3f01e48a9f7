"""The Starlette app: the link endpoint, the HTTP API, JWKS, health and metrics.

``GET``/``HEAD /a/{token}`` verify and render a confirmation page and never
consume (mail scanners fetch links before people do); ``POST /a/{token}``
verifies, consumes atomically and dispatches. The confirm form carries a signed,
short-lived nonce bound to the link's id; only an RFC 8058 one-click POST of an
action that allows it goes without. Links are built from the configured base
URL only; nothing here reads the Host header.

``create_app(service)`` returns the app for mounting in a user's own ASGI app
(library mode, Python handlers); ``app_from_env()`` is the uvicorn factory of
``actionlinks serve``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import os
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import itsdangerous
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from actionlinks.api import ApiEndpoints, openapi_document
from actionlinks.clock import SystemClock, format_instant
from actionlinks.errors import (
    ActionLinksError,
    ConfigurationError,
    HandlerError,
    LedgerUnavailableError,
    TokenAlreadyUsedError,
    TokenError,
    TokenExpiredError,
    WebhookError,
)
from actionlinks.forms import FormError, read_form
from actionlinks.metrics import Metrics, TimingMiddleware
from actionlinks.pages import PageRenderer, check_form, templates_dir, text_for
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.webhooks import WebhookHandler

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from starlette.requests import Request

    from actionlinks.actions import Action, Link, Renewer
    from actionlinks.clock import Clock
    from actionlinks.tokens import ActionClaims

_log = logging.getLogger("actionlinks")

FORM_NONCE_MAX_AGE = timedelta(hours=1)
RENEWAL_MAX_AGE = timedelta(days=1)
ONE_CLICK = ("List-Unsubscribe", "One-Click")

TOKEN_PAGE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How one kind of failure is shown: status, title and message."""

    status: int
    title: str
    message: str


OUTCOMES: dict[type[ActionLinksError], Outcome] = {
    TokenAlreadyUsedError: Outcome(
        status=409, title="Link already used", message="This link was already used."
    ),
    TokenExpiredError: Outcome(
        status=410, title="Link expired", message="This link has expired."
    ),
    TokenError: Outcome(
        status=400,
        title="Invalid link",
        message="This link is not valid. Please check that you copied all of it.",
    ),
    LedgerUnavailableError: Outcome(
        status=503,
        title="Temporarily unavailable",
        message="We cannot check links right now. Nothing was used; please retry.",
    ),
    HandlerError: Outcome(
        status=502,
        title="Something went wrong",
        message="Your link was not used up; please try again in a moment.",
    ),
    WebhookError: Outcome(
        status=502,
        title="Something went wrong",
        message="We could not reach the application; please try again in a moment.",
    ),
    ActionLinksError: Outcome(
        status=400, title="Invalid request", message="This request is not valid."
    ),
}
"""The one table mapping errors to responses (looked up along the MRO)."""


def outcome_for(exc: ActionLinksError) -> Outcome:
    """The outcome of ``exc``'s nearest class in :data:`OUTCOMES`."""
    for cls in type(exc).__mro__:
        found = OUTCOMES.get(cls)
        if found is not None:
            return found
    return OUTCOMES[ActionLinksError]  # pragma: no cover - the root is in the table


def wants_json(request: Request) -> bool:
    """Whether the client asked for JSON instead of HTML."""
    return "application/json" in request.headers.get("accept", "")


def _human(instant: datetime) -> str:
    return instant.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


class ClockSigner(itsdangerous.TimestampSigner):
    """itsdangerous' timestamp signer, reading time from the injected clock."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:  # noqa: ANN401
        """Keep the clock; everything else goes to ``TimestampSigner``."""
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        """The injected clock's time in seconds."""
        return int(self._clock.now().timestamp())


class LinkSite:
    """The link endpoint and the service routes around one :class:`Service`."""

    def __init__(self, service: Service, *, metrics: Metrics) -> None:
        """Derive the form and renewal signers from the key ring."""
        self.service = service
        self.metrics = metrics
        self.renderer = PageRenderer()
        # One derived secret per key and purpose, newest last (itsdangerous signs
        # with the last and verifies with all, so rotation keeps open forms).
        self.nonces = ClockSigner(
            [key.derive_secret(b"forms/confirm") for key in service.keys],
            clock=service.clock,
            key_derivation="none",
            digest_method=hashlib.sha256,
        )
        self.renewals = itsdangerous.URLSafeTimedSerializer(
            [key.derive_secret(b"forms/renew") for key in service.keys],
            signer=ClockSigner,
            signer_kwargs={
                "clock": service.clock,
                "key_derivation": "none",
                "digest_method": hashlib.sha256,
            },
        )

    # --- responses ------------------------------------------------------------

    def _page(
        self, request: Request, name: str, status: int, context: Mapping[str, Any]
    ) -> Response:
        html = self.renderer.render(
            name, {"static_url": self._static_url(request), **context}
        )
        return HTMLResponse(html, status_code=status, headers=TOKEN_PAGE_HEADERS)

    @staticmethod
    def _static_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}/static"

    @staticmethod
    def _json(status: int, body: Mapping[str, Any]) -> Response:
        return JSONResponse(dict(body), status_code=status, headers=TOKEN_PAGE_HEADERS)

    def failure(self, request: Request, exc: ActionLinksError) -> Response:
        """Render ``exc`` through the outcome table, as HTML or JSON."""
        outcome = outcome_for(exc)
        if isinstance(exc, TokenError):
            self.metrics.count("actionlinks_links_rejected_total", "reason", exc.code)
        message = outcome.message
        extra: dict[str, Any] = {}
        if isinstance(exc, TokenAlreadyUsedError) and exc.used_at is not None:
            message = f"This link was already used on {_human(exc.used_at)}."
            extra["used_at"] = format_instant(exc.used_at)
        renewal = (
            self._renewal_offer(exc) if isinstance(exc, TokenExpiredError) else None
        )
        if renewal is not None:
            message += " You can ask for a new one."
        if wants_json(request):
            body: dict[str, Any] = {"status": "error", "error": exc.code, **extra}
            if renewal is not None:
                body["renewal"] = renewal
            return self._json(outcome.status, body)
        return self._page(
            request,
            "error",
            outcome.status,
            {
                "title": outcome.title,
                "message": message,
                "renew_url": f"{request.scope.get('root_path', '')}/renew"
                if renewal
                else None,
                "renewal": renewal,
            },
        )

    def form_failure(self, request: Request, exc: FormError) -> Response:
        """A refused body or form: nothing was consumed."""
        if wants_json(request):
            return self._json(exc.status, {"status": "error", "error": exc.code})
        return self._page(
            request,
            "error",
            exc.status,
            {
                "title": "Invalid request",
                "message": "This form could not be accepted. Please open the link "
                "again and retry.",
                "renew_url": None,
                "renewal": None,
            },
        )

    # --- the link endpoint ----------------------------------------------------

    async def show(self, request: Request) -> Response:
        """GET and HEAD: verify and render the confirmation page; never consume."""
        token = request.path_params["token"]
        registry = self.service.registry
        try:
            claims = await registry.check(token, view=request.method == "GET")
        except ActionLinksError as exc:
            return self.failure(request, exc)
        if request.method == "GET":
            self.metrics.count(
                "actionlinks_links_viewed_total", "action", claims.action
            )
        return self._confirm_page(request, token, claims, status=200, problem=None)

    def _confirm_page(
        self,
        request: Request,
        token: str,
        claims: ActionClaims,
        *,
        status: int,
        problem: str | None,
    ) -> Response:
        nonce = self.nonce_for(claims.token_id)
        if wants_json(request):
            return self._json(
                status,
                {
                    "status": "valid" if problem is None else "error",
                    "action": claims.action,
                    "expires_at": format_instant(claims.expires_at),
                    "nonce": nonce,
                    **({"error": "invalid_form", "detail": problem} if problem else {}),
                },
            )
        text = text_for(claims.action)
        html = self.renderer.render_confirm(
            claims.action,
            {
                "static_url": self._static_url(request),
                "title": text.title,
                "prompt": text.prompt,
                "button": text.button,
                "fields": text.fields,
                "nonce": nonce,
                "action_url": f"{request.scope.get('root_path', '')}/a/{token}",
                "expires_at": _human(claims.expires_at),
                "problem": problem,
            },
        )
        return HTMLResponse(html, status_code=status, headers=TOKEN_PAGE_HEADERS)

    async def confirm(self, request: Request) -> Response:
        """POST: verify the form, consume atomically, dispatch, show the outcome."""
        token = request.path_params["token"]
        registry = self.service.registry
        try:
            form = await read_form(request)
        except FormError as exc:
            return self.form_failure(request, exc)
        try:
            claims = registry.verify(token, ignore_state=True)
            action = registry.get(claims.action)
        except TokenError as exc:
            await registry.record_rejection(exc)
            return self.failure(request, exc)
        except ActionLinksError as exc:
            return self.failure(request, exc)
        if action.one_click and form.get(ONE_CLICK[0]) == ONE_CLICK[1]:
            return await self._one_click(request, token, action)
        if not self._is_valid_nonce(form.get("nonce", ""), claims.token_id):
            return self.form_failure(request, FormError(403, "invalid_form"))
        checked = check_form(text_for(action.name), form)
        if isinstance(checked, str):
            return self._confirm_page(
                request, token, claims, status=422, problem=checked
            )
        try:
            redemption = await registry.redeem(token, action=action.name, form=checked)
        except ActionLinksError as exc:
            return self.failure(request, exc)
        self.metrics.count("actionlinks_links_used_total", "action", action.name)
        if action.redirect is not None:
            return RedirectResponse(
                action.redirect, status_code=303, headers=TOKEN_PAGE_HEADERS
            )
        return self._done(request, action, redemption.claims)

    async def _one_click(
        self, request: Request, token: str, action: Action
    ) -> Response:
        """RFC 8058: redeem without a form; idempotent; never a redirect."""
        try:
            redemption = await self.service.registry.redeem(token, action=action.name)
        except ActionLinksError as exc:
            return self.failure(request, exc)
        self.metrics.count("actionlinks_links_used_total", "action", action.name)
        return self._done(request, action, redemption.claims)

    def _done(self, request: Request, action: Action, claims: ActionClaims) -> Response:
        if wants_json(request):
            return self._json(
                200, {"status": "ok", "action": action.name, "jti": claims.token_id}
            )
        text = text_for(action.name)
        return self._page(
            request, "done", 200, {"title": text.title, "message": text.done}
        )

    def nonce_for(self, token_id: str) -> str:
        """The confirm form's nonce for the link ``token_id`` (one hour)."""
        return self.nonces.sign(token_id).decode("ascii")

    def _is_valid_nonce(self, nonce: str, token_id: str) -> bool:
        try:
            value = self.nonces.unsign(
                nonce, max_age=int(FORM_NONCE_MAX_AGE.total_seconds())
            )
        except itsdangerous.BadData:
            return False
        return hmac.compare_digest(value, token_id.encode())

    # --- renewal of expired links ----------------------------------------------

    def _renewal_offer(self, exc: TokenExpiredError) -> str | None:
        if exc.action is None or exc.subject is None or exc.token_id is None:
            return None
        action = self.service.registry.actions.get(exc.action)
        if action is None or action.renew is None:
            return None
        offer = {"sub": exc.subject, "action": exc.action, "jti": exc.token_id}
        return str(self.renewals.dumps(offer))

    async def renew(self, request: Request) -> Response:
        """POST /renew: mint and deliver a new link for the signed subject."""
        try:
            form = await read_form(request)
            offer = self.renewals.loads(
                form.get("renewal", ""), max_age=int(RENEWAL_MAX_AGE.total_seconds())
            )
            action = self.service.registry.get(str(offer["action"]))
            subject, expired_id = str(offer["sub"]), str(offer["jti"])
        except FormError as exc:
            return self.form_failure(request, exc)
        except (itsdangerous.BadData, KeyError, TypeError, ConfigurationError):
            return self.form_failure(request, FormError(400, "invalid_renewal"))
        if action.renew is None:
            return self.form_failure(request, FormError(400, "invalid_renewal"))
        try:
            expires_at = self.service.clock.now() + RENEWAL_MAX_AGE
            if not await self.service.ledger.consume(
                f"renew:{expired_id}", expires_at=expires_at
            ):
                return self.form_failure(request, FormError(409, "already_renewed"))
            link = await self.service.registry.mint(action.name, subject=subject)
            await action.renew(link)
        except LedgerUnavailableError as exc:
            return self.failure(request, exc)
        except ActionLinksError as exc:
            _log.warning("could not deliver a renewed %s link: %s", action.name, exc)
            return self.failure(request, HandlerError("delivery failed"))
        self.metrics.count("actionlinks_links_minted_total", "action", action.name)
        if wants_json(request):
            return self._json(200, {"status": "ok", "action": action.name})
        return self._page(
            request,
            "done",
            200,
            {"title": "New link sent", "message": "A new link is on its way to you."},
        )

    # --- service routes -----------------------------------------------------------

    async def jwks(self, request: Request) -> Response:
        """GET /.well-known/jwks.json: the public keys (EdDSA, ES256)."""
        return JSONResponse(
            self.service.keys.jwks(), headers={"Cache-Control": "public, max-age=300"}
        )

    async def healthz(self, request: Request) -> Response:
        """GET /healthz: 200 when the database answers, else 503."""
        try:
            await self.service.check_health()
        except LedgerUnavailableError:
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def metrics_text(self, request: Request) -> Response:
        """GET /metrics: Prometheus text."""
        return PlainTextResponse(
            self.metrics.render(), media_type="text/plain; version=0.0.4"
        )

    async def openapi(self, request: Request) -> Response:
        """GET /openapi.json: the HTTP API's description."""
        return JSONResponse(openapi_document(self.service.registry.base_url))

    # --- wiring -------------------------------------------------------------------

    def wire_webhook_handlers(self, client: httpx.AsyncClient) -> None:
        """Give actions with a ``handler_url`` a signed-webhook handler and renewal.

        Raises:
            ConfigurationError: a handler URL without a valid secret.
        """
        registry = self.service.registry
        settings = self.service.settings
        for action in list(registry.actions.values()):
            if action.handler_url is None or action.handler is not None:
                continue
            if action.handler_secret is None:
                raise ConfigurationError(
                    f"[actions.{action.name}] handler_url needs a handler_secret"
                )
            handler = WebhookHandler(
                action.handler_url,
                secret=action.handler_secret,
                client=client,
                clock=self.service.clock,
                allow_private=settings.webhook_allow_private,
            )
            registry.declare(
                dataclasses.replace(
                    action,
                    handler=handler,
                    renew=action.renew or _renewal_announcer(handler),
                )
            )


def _renewal_announcer(handler: WebhookHandler) -> Renewer:
    async def announce(link: Link) -> None:
        await handler.send(
            "link.renewed",
            {
                "action": link.claims.action,
                "sub": link.claims.subject,
                "jti": link.claims.token_id,
                "url": link.url,
                "expires_at": format_instant(link.claims.expires_at),
            },
        )

    return announce


async def _no_content(request: Request) -> Response:
    return Response(status_code=204)


def check_redirects(service: Service) -> None:
    """Refuse success redirects outside the base URL's origin and the allow-list.

    Raises:
        ConfigurationError: a redirect to another origin.
    """
    base = urlsplit(service.registry.base_url)
    allowed = {f"{base.scheme}://{base.netloc}"}
    allowed.update(o.rstrip("/") for o in service.settings.redirect_origins)
    for action in service.registry.actions.values():
        if action.redirect is None:
            continue
        target = urlsplit(action.redirect)
        if f"{target.scheme}://{target.netloc}" not in allowed:
            raise ConfigurationError(
                f"{action.name}: redirect origin is not allowed; add it to "
                "ACTIONLINKS_REDIRECT_ORIGINS"
            )


def create_app(service: Service, *, close_service: bool = False) -> Starlette:
    """The Starlette app serving ``service``.

    Args:
        service: keys, database and actions (with Python handlers in library
            mode).
        close_service: whether the app closes the service when it shuts down.

    Raises:
        ConfigurationError: a redirect outside the allowed origins.
    """
    check_redirects(service)
    metrics = Metrics()
    site = LinkSite(service, metrics=metrics)
    api = ApiEndpoints(service, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(follow_redirects=False) as client:
            site.wire_webhook_handlers(client)
            try:
                yield
            finally:
                if close_service:
                    service.close()

    routes = [
        Route("/a/{token}", site.show, methods=["GET", "HEAD"]),
        Route("/a/{token}", site.confirm, methods=["POST"]),
        Route("/renew", site.renew, methods=["POST"]),
        Route("/.well-known/jwks.json", site.jwks, methods=["GET"]),
        Route("/healthz", site.healthz, methods=["GET"]),
        Route("/metrics", site.metrics_text, methods=["GET"]),
        Route("/openapi.json", site.openapi, methods=["GET"]),
        Route("/favicon.ico", _no_content, methods=["GET"]),
        *api.routes(),
        Mount("/static", app=StaticFiles(directory=templates_dir() / "static")),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(TimingMiddleware, metrics=metrics)],
    )


def app_from_env() -> Starlette:
    """The uvicorn factory of ``actionlinks serve``: settings from the environment."""
    settings = Settings.from_env(os.environ)
    service = Service.open(settings, clock=SystemClock())
    return create_app(service, close_service=True)
