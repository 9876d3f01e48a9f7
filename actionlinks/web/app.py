"""The Starlette app: the link endpoint, the HTTP API, JWKS, health and metrics.

``GET``/``HEAD /a/{token}`` verify and render a confirmation page and never
consume (mail scanners fetch links before people do); ``POST /a/{token}``
verifies, consumes atomically and dispatches. The confirm form carries a signed,
short-lived nonce bound to the link's id; only an RFC 8058 one-click POST of an
action that allows it goes without. Links are built from the configured base
URL only; nothing here reads the Host header.

``create_app(service)`` only routes requests to the service: it works mounted in
another app (whose lifespan opens the service) or standalone (its own lifespan
opens it). Errors become responses in one place, :func:`error_response`,
registered as the app's exception handler. ``app_from_env()`` is the uvicorn
factory of ``actionlinks serve``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import itsdangerous
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from actionlinks.assets import templates_dir
from actionlinks.clock import format_instant, human_instant
from actionlinks.errors import (
    ActionLinksError,
    HandlerError,
    LedgerUnavailableError,
    RequestError,
    ServiceClosedError,
    TokenAlreadyUsedError,
    TokenError,
    TokenExpiredError,
    WebhookError,
)
from actionlinks.registry import ExpiredLink
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.web.admission import FormAdmission
from actionlinks.web.api import ApiEndpoints, api_error
from actionlinks.web.api_mail import MailRoutes
from actionlinks.web.api_webhooks import WebhookRoutes
from actionlinks.web.forms import read_form
from actionlinks.web.metrics import Metrics, TimingMiddleware
from actionlinks.web.nonces import FormNonces, form_keys
from actionlinks.web.openapi import openapi_document
from actionlinks.web.pages import PageRenderer, text_for

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from starlette.requests import Request

    from actionlinks.actions import Action
    from actionlinks.clock import Clock
    from actionlinks.keys import KeyRing
    from actionlinks.tokens import ActionClaims

_log = logging.getLogger("actionlinks")

FORM_NONCE_MAX_AGE = timedelta(hours=1)
RENEWAL_OFFER_MAX_AGE = timedelta(days=1)

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
    """How one kind of failure is shown: status, public code, title and message."""

    status: int
    code: str
    title: str
    message: str


_INVALID_LINK = Outcome(
    status=400,
    code="invalid_link",
    title="Invalid link",
    message="This link is not valid. Please check that you copied all of it.",
)
_HANDLER_FAILED = Outcome(
    status=502,
    code="handler_failed",
    title="Something went wrong",
    message="Your link was not used up; please try again in a moment.",
)
OUTCOMES: dict[type[ActionLinksError], Outcome] = {
    TokenAlreadyUsedError: Outcome(
        status=409,
        code="already_used",
        title="Link already used",
        message="This link was already used.",
    ),
    TokenExpiredError: Outcome(
        status=410,
        code="expired",
        title="Link expired",
        message="This link has expired.",
    ),
    TokenError: _INVALID_LINK,
    LedgerUnavailableError: Outcome(
        status=503,
        code="unavailable",
        title="Temporarily unavailable",
        message="We cannot check links right now. Nothing was used; please retry.",
    ),
    HandlerError: _HANDLER_FAILED,
    WebhookError: _HANDLER_FAILED,
    ActionLinksError: Outcome(
        status=400,
        code="invalid_request",
        title="Invalid request",
        message="This request is not valid.",
    ),
}
"""The one table mapping errors to responses (looked up along the MRO).

Every invalid link gets the same answer, whatever check failed: the reason goes
to the log, the metrics and the link's status, never to the person.
"""
_SPENT = dataclasses.replace(
    _HANDLER_FAILED,
    message="Something went wrong, and this link may be used up. Please ask for "
    "a new one.",
)


def outcome_for(exc: ActionLinksError) -> Outcome:
    """The outcome of ``exc``'s nearest class in :data:`OUTCOMES`."""
    if isinstance(exc, HandlerError) and not exc.released:
        return _SPENT
    for cls in type(exc).__mro__:
        found = OUTCOMES.get(cls)
        if found is not None:
            return found
    return OUTCOMES[ActionLinksError]  # pragma: no cover - the root is in the table


def wants_json(request: Request) -> bool:
    """Whether the client asked for JSON instead of HTML."""
    for name, value in request.scope["headers"]:
        if name == b"accept":
            return b"application/json" in value
    return False


_PAGE_HEADERS = [
    *(
        (name.lower().encode(), value.encode())
        for name, value in TOKEN_PAGE_HEADERS.items()
    ),
    (b"content-type", b"text/html; charset=utf-8"),
]


_REFUSED = "This form could not be accepted. Please open the link again and retry."
_REFUSAL_MESSAGES = {
    # Opening the expired link again offers nothing: one renewal per link.
    "not_renewable": (
        "A new link was sent already, or this one may not be renewed: look for "
        "the newest link in your inbox."
    ),
}


class PageResponse(HTMLResponse):
    """An HTML page with :data:`TOKEN_PAGE_HEADERS`, their bytes made once."""

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        """The page headers and the body's length (``headers`` must be None)."""
        if headers is not None:  # pragma: no cover - the page headers are fixed
            raise TypeError("a PageResponse carries the token page headers only")
        self.raw_headers = [
            *_PAGE_HEADERS,
            (b"content-length", str(len(self.body)).encode()),
        ]


class ClockSigner(itsdangerous.TimestampSigner):
    """itsdangerous' timestamp signer, reading time from the injected clock."""

    def __init__(self, *args: Any, clock: Clock, **kwargs: Any) -> None:  # noqa: ANN401
        """Keep the clock; everything else goes to ``TimestampSigner``."""
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        """The injected clock's time in seconds."""
        return int(self._clock.now().timestamp())


@dataclasses.dataclass(frozen=True, slots=True)
class _Signers:
    """The form and renewal signers of one key ring."""

    ring: KeyRing
    nonces: FormNonces
    renewals: itsdangerous.URLSafeTimedSerializer


class LinkSite:
    """The link endpoint and the service routes around one :class:`Service`."""

    def __init__(self, service: Service, *, metrics: Metrics) -> None:
        """Serve ``service``; count outcomes in ``metrics``."""
        self.service = service
        self.metrics = metrics
        self.renderer = PageRenderer()
        self._signers = self._signers_for(service.keys)

    def _signers_for(self, ring: KeyRing) -> _Signers:
        # One derived secret per key and purpose (the last signs, all verify,
        # so rotation keeps open forms).
        clock = self.service.clock
        keys = form_keys(ring)
        return _Signers(
            ring=ring,
            nonces=FormNonces(
                [key.derive_secret(b"forms/confirm") for key in keys],
                clock=clock,
                max_age=int(FORM_NONCE_MAX_AGE.total_seconds()),
            ),
            renewals=itsdangerous.URLSafeTimedSerializer(
                [key.derive_secret(b"forms/renew") for key in keys],
                signer=ClockSigner,
                signer_kwargs={
                    "clock": clock,
                    "key_derivation": "none",
                    "digest_method": hashlib.sha256,
                },
            ),
        )

    @property
    def signers(self) -> _Signers:
        """The signers of the key ring in use now (rebuilt after a reload)."""
        ring = self.service.keys
        if self._signers.ring is not ring:
            self._signers = self._signers_for(ring)
        return self._signers

    # --- responses ------------------------------------------------------------

    def _page(
        self, request: Request, name: str, status: int, context: Mapping[str, Any]
    ) -> Response:
        html = self.renderer.render(
            name, {"static_url": _path(request, "/static"), **context}
        )
        return PageResponse(html, status_code=status)

    @staticmethod
    def _json(status: int, body: Mapping[str, Any]) -> Response:
        return JSONResponse(dict(body), status_code=status, headers=TOKEN_PAGE_HEADERS)

    async def failure(self, request: Request, exc: ActionLinksError) -> Response:
        """Render ``exc`` through the outcome table, as HTML or JSON."""
        if isinstance(exc, RequestError):
            return self._refused(request, exc)
        if isinstance(exc, ServiceClosedError):
            _log.error("%s", exc)
        outcome = outcome_for(exc)
        if isinstance(exc, TokenError):
            self.metrics.count("actionlinks_links_rejected_total", "reason", exc.code)
        message = outcome.message
        extra: dict[str, Any] = {}
        if isinstance(exc, TokenAlreadyUsedError):
            if exc.used_at is None:
                message = (
                    "This link is being used right now. If nothing comes of it, "
                    "it works again in a few minutes."
                )
            else:
                message = f"This link was already used on {human_instant(exc.used_at)}."
                extra["used_at"] = format_instant(exc.used_at)
        renewal = await self._renewal_offer(exc)
        if renewal is not None:
            message += " You can ask for a new one."
        if wants_json(request):
            body: dict[str, Any] = {"status": "error", "error": outcome.code, **extra}
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
                "renew_url": _path(request, "/renew") if renewal else None,
                "renewal": renewal,
            },
        )

    def _refused(self, request: Request, exc: RequestError) -> Response:
        """A refused body or form: nothing was consumed."""
        if wants_json(request):
            return self._json(exc.status, {"status": "error", "error": exc.code})
        return self._page(
            request,
            "error",
            exc.status,
            {
                "title": "Invalid request",
                "message": _REFUSAL_MESSAGES.get(exc.code, _REFUSED),
                "renew_url": None,
                "renewal": None,
            },
        )

    # --- the link endpoint ----------------------------------------------------

    async def show(self, request: Request) -> Response:
        """GET and HEAD: verify and render the confirmation page; never consume."""
        self.service.require_open()  # the same 503 for every link while closed
        token = request.path_params["token"]
        claims = await self.service.registry.check(token, view=request.method == "GET")
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
        values = {
            "static_url": _path(request, "/static"),
            "nonce": nonce,
            "action_url": _path(request, f"/a/{token}"),
            "expires_at": human_instant(claims.expires_at),
        }
        if problem is None:
            html = self.renderer.confirm_page(claims.action, text, values)
        else:
            html = self.renderer.render_confirm(
                claims.action,
                {
                    "title": text.title,
                    "prompt": text.prompt,
                    "button": text.button,
                    "fields": text.fields,
                    "problem": problem,
                    **values,
                },
            )
        return PageResponse(html, status_code=status)

    async def confirm(self, request: Request) -> Response:
        """POST: verify the link, admit the form, consume atomically, dispatch."""
        self.service.require_open()
        token = request.path_params["token"]
        registry = self.service.registry
        admission = FormAdmission(
            await read_form(request),
            action=registry.get,
            is_valid_nonce=self.signers.nonces.is_valid,
        )
        try:
            redemption = await registry.redeem(token, admit=admission)
        except RequestError:
            # Used and revoked links answer as on GET, before the form's fault:
            # the answer never tells a forged link from a dead one.
            await self._check_alive(token)
            if admission.claims is None or admission.problem is None:
                raise
            return self._confirm_page(
                request, token, admission.claims, status=422, problem=admission.problem
            )
        claims = redemption.claims
        action = registry.get(claims.action)
        self.metrics.count("actionlinks_links_used_total", "action", action.name)
        if action.redirect is not None and not admission.one_click:
            return RedirectResponse(  # RFC 8058: one click is never redirected
                action.redirect, status_code=303, headers=TOKEN_PAGE_HEADERS
            )
        return self._done(request, action, claims)

    async def _check_alive(self, token: str) -> None:
        """Raise the rejection of a used, revoked or forged link; record it."""
        registry = self.service.registry
        try:
            await registry.check(token, ignore_state=True)
        except TokenError as exc:
            await registry.record_rejection(exc)
            raise

    def _done(self, request: Request, action: Action, claims: ActionClaims) -> Response:
        if wants_json(request):
            return self._json(
                200, {"status": "ok", "action": action.name, "jti": claims.token_id}
            )
        text = text_for(action.name)
        html = self.renderer.fixed_page(
            "done",
            {
                "static_url": _path(request, "/static"),
                "title": text.title,
                "message": text.done,
            },
        )
        return PageResponse(html)

    def nonce_for(self, token_id: str) -> str:
        """The confirm form's nonce for the link ``token_id`` (one hour)."""
        return self.signers.nonces.sign(token_id)

    # --- renewal of expired links ----------------------------------------------

    async def _renewal_offer(self, exc: ActionLinksError) -> str | None:
        """A signed offer to renew an expired link, when it may be renewed."""
        if not isinstance(exc, TokenExpiredError):
            return None
        expired = ExpiredLink.from_error(exc)
        if expired is None:
            return None
        try:
            if not await self.service.registry.is_renewable(expired):
                return None
        except LedgerUnavailableError:
            return None
        offer = {
            "action": expired.action,
            "sub": expired.subject,
            "jti": expired.token_id,
            "iat": expired.issued_at.isoformat(),
            "exp": expired.expired_at.isoformat(),
            "dat": expired.data,
        }
        return str(self.signers.renewals.dumps(offer))

    def _read_offer(self, text: str) -> ExpiredLink:
        invalid = RequestError("no valid renewal", status=400, code="invalid_renewal")
        try:
            offer = self.signers.renewals.loads(
                text, max_age=int(RENEWAL_OFFER_MAX_AGE.total_seconds())
            )
            return ExpiredLink(
                action=str(offer["action"]),
                subject=str(offer["sub"]),
                token_id=str(offer["jti"]),
                issued_at=datetime.fromisoformat(offer["iat"]),
                expired_at=datetime.fromisoformat(offer["exp"]),
                data=_object_or_none(offer.get("dat")),
            )
        except (itsdangerous.BadData, KeyError, TypeError, ValueError) as exc:
            raise invalid from exc

    async def renew(self, request: Request) -> Response:
        """POST /renew: mint and deliver a new link in place of an expired one."""
        self.service.require_open()
        form = await read_form(request)
        expired = self._read_offer(form.get("renewal", ""))
        try:
            link = await self.service.registry.renew(expired)
        except TokenError as exc:
            raise RequestError(
                "the link may not be renewed", status=409, code="not_renewable"
            ) from exc
        self.metrics.count(
            "actionlinks_links_minted_total", "action", link.claims.action
        )
        if wants_json(request):
            return self._json(200, {"status": "ok", "action": link.claims.action})
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

    async def openapi(self, request: Request) -> Response:
        """GET /openapi.json: the HTTP API's description."""
        return JSONResponse(openapi_document(self.service.registry.base_url))


def _object_or_none(value: object) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise TypeError(value)


def _path(request: Request, path: str) -> str:
    """``path`` under the prefix the app is mounted at (never the Host header)."""
    return f"{request.scope.get('root_path', '')}{path}"


async def _no_content(request: Request) -> Response:
    return Response(status_code=204)


def create_app(service: Service) -> Starlette:
    """The Starlette app serving ``service``: routes only.

    Standalone, its lifespan opens the service. Mounted in another app, whose
    lifespan Starlette runs instead, that lifespan must open it::

        @asynccontextmanager
        async def lifespan(app):
            async with service:
                yield

    Until it is open, requests that need the store answer 503 and the log says
    why.
    """
    metrics = Metrics()
    site = LinkSite(service, metrics=metrics)
    api = ApiEndpoints(service, metrics=metrics)

    async def error_response(request: Request, exc: Exception) -> Response:
        """The one place errors become responses: API JSON, or a page."""
        if not isinstance(exc, ActionLinksError):  # pragma: no cover - registered so
            raise exc
        if api.serves(request):
            return api_error(exc)
        return await site.failure(request, exc)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with service:
            yield

    routes = [
        Route("/a/{token}", site.show, methods=["GET", "HEAD"], name="link"),
        Route("/a/{token}", site.confirm, methods=["POST"], name="link-confirm"),
        Route("/renew", site.renew, methods=["POST"], name="renew"),
        Route("/.well-known/jwks.json", site.jwks, methods=["GET"], name="jwks"),
        Route("/healthz", site.healthz, methods=["GET"], name="healthz"),
        Route("/openapi.json", site.openapi, methods=["GET"], name="openapi"),
        Route("/favicon.ico", _no_content, methods=["GET"], name="favicon"),
        *api.routes(),
        *WebhookRoutes(lambda: service.webhooks, guard=api.guard).routes(),
        *MailRoutes(lambda: service.mail, guard=api.guard).routes(),
        Mount(
            "/static",
            app=StaticFiles(directory=templates_dir() / "static"),
            name="static",
        ),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(TimingMiddleware, metrics=metrics)],
        exception_handlers={ActionLinksError: error_response},
    )
    # A trailing-slash redirect would be built from the Host header, token and all.
    app.router.redirect_slashes = False
    return app


def app_from_env() -> Starlette:
    """The uvicorn factory of ``actionlinks serve``: settings from the environment."""
    settings = Settings.from_env(os.environ)
    return create_app(Service(settings, reload_on_sighup=True))
