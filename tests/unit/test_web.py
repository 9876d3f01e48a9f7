"""The link endpoint and service routes through Starlette's TestClient."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from support import rejection_cases

from actionlinks.actions import Action
from actionlinks.errors import ConfigurationError
from actionlinks.home import initialize
from actionlinks.service import Service
from actionlinks.settings import Settings
from actionlinks.web import create_app

BASE = "https://links.example.test"
NONCE = re.compile(r'name="nonce" value="([^"]+)"')


@pytest.fixture
def service(tmp_path, clock):
    settings = Settings(home=tmp_path, base_url=BASE, issuer=BASE)
    initialize(settings, clock=clock)
    return Service(settings, clock=clock)


@pytest.fixture
def client(service):
    with TestClient(create_app(service), base_url="http://testserver") as client:
        yield client


async def mint(service, action="email-confirm", **kwargs):
    return await service.registry.mint(action, subject=kwargs.pop("sub", "u"), **kwargs)


def path(link):
    return link.url.removeprefix(BASE)


def nonce_of(response):
    return NONCE.search(response.text).group(1)


def used(service, link):
    return service.ledger.lookup(link.claims.token_id)


async def test_get_and_head_never_consume_and_post_then_succeeds(service, client):
    """100 GETs and HEADs (scanners) leave the link usable; one POST uses it."""
    calls = []

    async def handler(claims, form):
        calls.append(claims.subject)

    service.registry.declare(
        Action(name="email-confirm", ttl=timedelta(hours=1), handler=handler)
    )
    link = await mint(service)
    for _ in range(50):
        assert client.get(path(link)).status_code == 200
        assert client.head(path(link)).status_code == 200
    assert calls == []
    assert await used(service, link) is None
    page = client.get(path(link))
    response = client.post(path(link), data={"nonce": nonce_of(page)})
    assert response.status_code == 200
    assert "confirmed" in response.text
    assert calls == ["u"]
    again = client.post(path(link), data={"nonce": nonce_of(page)})
    assert again.status_code == 409
    assert "already used on" in again.text


async def test_a_confirmation_post_verifies_once_and_reads_no_state_first(
    service, client, monkeypatch
):
    """The consume itself answers used or revoked: no status read before it."""
    link = await mint(service)
    nonce = nonce_of(client.get(path(link)))
    verified, read = [], []
    issuer = service.registry.issuer
    verify, standing = issuer.verify, service.ledger.standing

    def counted_verify(*args, **kwargs):
        verified.append(args[0])
        return verify(*args, **kwargs)

    async def counted_standing(*args, **kwargs):
        read.append(args[0])
        return await standing(*args, **kwargs)

    monkeypatch.setattr(type(issuer), "verify", staticmethod(counted_verify))
    ledger_type = type(service.ledger)
    monkeypatch.setattr(ledger_type, "standing", staticmethod(counted_standing))
    assert client.post(path(link), data={"nonce": nonce}).status_code == 200
    assert (len(verified), read) == (1, [])
    assert await used(service, link) is not None


async def test_confirm_page_has_a_form_posting_back_with_a_nonce(service, client):
    """The page posts to the same path and carries the signed nonce."""
    link = await mint(service)
    page = client.get(path(link))
    assert f'action="{path(link)}"' in page.text
    assert nonce_of(page)
    assert "<script" not in page.text


async def test_token_pages_send_the_protective_headers(service, client):
    """Referrer-Policy, Cache-Control, X-Robots-Tag and a strict CSP everywhere."""
    link = await mint(service)
    for response in (
        client.get(path(link)),
        client.post(path(link), data={"nonce": "x"}),
        client.get("/a/not.a.token"),
    ):
        headers = response.headers
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert "noindex" in headers["x-robots-tag"]
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp
        assert "script-src" not in csp
        assert "unsafe-inline" not in csp


@pytest.mark.parametrize(
    "form",
    [{}, {"nonce": ""}, {"nonce": "garbage"}, {"nonce": "a.b.c"}],
)
async def test_post_without_a_valid_nonce_is_refused_and_consumes_nothing(
    service, client, form
):
    """A POST without a valid nonce (CSRF, blind replays) is refused with 403."""
    link = await mint(service)
    response = client.post(path(link), data=form)
    assert response.status_code == 403
    assert await used(service, link) is None


async def test_nonce_of_another_link_is_refused(service, client):
    """A nonce is bound to one link's id."""
    first, second = await mint(service), await mint(service, sub="v")
    nonce = nonce_of(client.get(path(first)))
    assert client.post(path(second), data={"nonce": nonce}).status_code == 403
    assert await used(service, second) is None


async def test_expired_nonce_is_refused(service, client, clock):
    """A nonce older than an hour no longer confirms."""
    link = await mint(service, "invite")
    nonce = nonce_of(client.get(path(link)))
    clock.advance(timedelta(hours=1, seconds=1))
    response = client.post(path(link), data={"nonce": nonce})
    assert response.status_code == 403


async def test_password_reset_asks_twice_and_refuses_a_mismatch(service, client):
    """The reset page asks for the password twice; a mismatch consumes nothing."""
    received = []

    async def handler(claims, form):
        received.append(dict(form))

    service.registry.declare(
        Action(name="password-reset", ttl=timedelta(minutes=30), handler=handler)
    )
    link = await mint(service, "password-reset", sub="user:42")
    page = client.get(path(link))
    assert 'name="password"' in page.text
    assert 'name="password_confirm"' in page.text
    nonce = nonce_of(page)
    bad = client.post(
        path(link),
        data={"nonce": nonce, "password": "secret-one", "password_confirm": "other"},
    )
    assert bad.status_code == 422
    assert "do not match" in bad.text
    assert await used(service, link) is None
    short = client.post(
        path(link), data={"nonce": nonce, "password": "x", "password_confirm": "x"}
    )
    assert short.status_code == 422
    good = client.post(
        path(link),
        data={
            "nonce": nonce,
            "password": "secret-one",
            "password_confirm": "secret-one",
        },
    )
    assert good.status_code == 200
    assert received == [{"password": "secret-one", "password_confirm": "secret-one"}]


async def test_failing_handler_says_try_again_and_releases_the_use(service, client):
    """A handler failure answers 502 and the link works on the next try."""
    outcomes = [RuntimeError("down"), None]

    async def handler(claims, form):
        failure = outcomes.pop(0)
        if failure:
            raise failure

    service.registry.declare(
        Action(name="invite", ttl=timedelta(days=1), handler=handler)
    )
    link = await mint(service, "invite")
    nonce = nonce_of(client.get(path(link)))
    first = client.post(path(link), data={"nonce": nonce})
    assert first.status_code == 502
    assert "try again" in first.text
    assert await used(service, link) is None
    assert client.post(path(link), data={"nonce": nonce}).status_code == 200


async def test_success_redirects_with_303_to_the_allowed_redirect(service, client):
    """An action with a redirect answers 303 to it after success."""
    service.registry.declare(
        Action(name="invite", ttl=timedelta(days=1), redirect=f"{BASE}/welcome")
    )
    link = await mint(service, "invite")
    nonce = nonce_of(client.get(path(link)))
    response = client.post(path(link), data={"nonce": nonce}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"{BASE}/welcome"


def test_redirect_to_another_origin_is_refused_at_start(service):
    """Open redirects are configuration errors when the service opens."""
    service.registry.declare(
        Action(name="invite", ttl=timedelta(days=1), redirect="https://evil.test/x")
    )
    app = create_app(service)
    with pytest.raises(ConfigurationError, match="redirect"), TestClient(app):
        pass


async def test_expired_link_answers_410_and_offers_a_new_one(service, client, clock):
    """410 with a signed renewal form; posting it delivers a new link once."""
    delivered = []

    async def renew(link):
        delivered.append(link)

    service.registry.declare(
        Action(name="magic-signin", ttl=timedelta(minutes=15), renew=renew)
    )
    link = await mint(service, "magic-signin", sub="a@example.test")
    clock.advance(timedelta(minutes=20))
    page = client.get(path(link))
    assert page.status_code == 410
    assert "a@example.test" not in page.text
    renewal = re.search(r'name="renewal" value="([^"]+)"', page.text).group(1)
    assert 'type="email"' not in page.text
    response = client.post("/renew", data={"renewal": renewal})
    assert response.status_code == 200
    assert [d.claims.subject for d in delivered] == ["a@example.test"]
    assert delivered[0].url.startswith(f"{BASE}/a/")
    assert client.post("/renew", data={"renewal": renewal}).status_code == 409
    assert client.post("/renew", data={"renewal": "forged"}).status_code == 400


async def test_expired_link_without_renewal_offers_nothing(service, client, clock):
    """Actions without a way to deliver a new link show a plain 410."""
    link = await mint(service, "invite")
    clock.advance(timedelta(days=8))
    page = client.get(path(link))
    assert page.status_code == 410
    assert "renewal" not in page.text


async def test_json_clients_get_json_outcomes(service, client, clock):
    """Accept: application/json gets {"status", "error"} instead of HTML."""
    headers = {"Accept": "application/json"}
    link = await mint(service)
    shown = client.get(path(link), headers=headers).json()
    assert shown["status"] == "valid"
    assert shown["action"] == "email-confirm"
    done = client.post(path(link), data={"nonce": shown["nonce"]}, headers=headers)
    assert done.json() == {
        "status": "ok",
        "action": "email-confirm",
        "jti": link.claims.token_id,
    }
    again = client.post(path(link), data={"nonce": shown["nonce"]}, headers=headers)
    assert again.status_code == 409
    assert again.json()["error"] == "already_used"
    bad = client.get("/a/x.y.z", headers=headers)
    assert bad.status_code == 400
    assert bad.json() == {"status": "error", "error": "invalid_link"}


async def test_unknown_query_parameters_are_ignored(service, client):
    """utm_* and fbclid do not change anything."""
    link = await mint(service)
    page = client.get(path(link) + "?utm_source=mail&fbclid=abc")
    assert page.status_code == 200
    response = client.post(
        path(link) + "?utm_campaign=x", data={"nonce": nonce_of(page)}
    )
    assert response.status_code == 200


async def test_one_click_unsubscribe_works_without_nonce_and_is_idempotent(
    service, client
):
    """RFC 8058: urlencoded or multipart, no cookies, 200 each time, no redirect."""
    link = await mint(service, "unsubscribe", sub="a@example.test")
    body = {"List-Unsubscribe": "One-Click"}
    first = client.post(path(link), data=body, follow_redirects=False)
    assert first.status_code == 200
    assert "set-cookie" not in first.headers
    multipart = client.post(
        path(link),
        files={"List-Unsubscribe": (None, "One-Click")},
        follow_redirects=False,
    )
    assert multipart.status_code == 200
    assert "unsubscribed" in multipart.text


async def test_one_click_body_is_refused_for_other_actions(service, client):
    """Only actions that allow it accept a one-click POST without the form."""
    link = await mint(service, "invite")
    response = client.post(path(link), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 403
    assert await used(service, link) is None


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
async def test_every_rejection_case_is_a_4xx_and_consumes_nothing(
    service, client, method
):
    """The foundation's hostile tokens over HTTP: 4xx, never 5xx, nothing used."""
    link = await mint(service)
    key = service.keys.signing_key("HS256")
    for name, token in rejection_cases(link.token, key).items():
        response = client.request(
            method, f"/a/{token}", data={"nonce": "x"} if method == "POST" else None
        )
        assert 400 <= response.status_code < 500, (name, response.status_code)
    assert await used(service, link) is None
    nonce = nonce_of(client.get(path(link)))
    assert client.post(path(link), data={"nonce": nonce}).status_code == 200


async def test_oversized_and_foreign_bodies_are_refused(service, client):
    """Over 64 KiB is 413, a JSON body 415; neither consumes."""
    link = await mint(service)
    big = client.post(
        path(link),
        content=b"a=" + b"x" * 70_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413
    foreign = client.post(path(link), json={"nonce": "x"})
    assert foreign.status_code == 415
    broken = client.post(
        path(link),
        content=b"\xff\xfe=\x00",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert broken.status_code == 400
    assert await used(service, link) is None


async def test_ledger_outage_is_503_and_consumes_nothing(service, client):
    """A database failure is 503, never an unused or a 500."""
    link = await mint(service)
    nonce = nonce_of(client.get(path(link)))
    service.store.database.close()
    response = client.post(path(link), data={"nonce": nonce})
    assert response.status_code == 503
    assert client.get(path(link)).status_code == 503
    assert client.get("/healthz").status_code == 503


async def test_link_status_records_view_use_and_rejections(service, client):
    """The store tracks issued → viewed → used, and rejected attempts with reasons."""
    link = await mint(service)
    status = await service.links.status(link.claims.token_id)
    assert status.state == "issued"
    nonce = nonce_of(client.get(path(link)))
    assert (await service.links.status(link.claims.token_id)).state == "viewed"
    client.post(path(link), data={"nonce": nonce})
    client.post(path(link), data={"nonce": nonce})
    status = await service.links.status(link.claims.token_id)
    assert status.state == "used"
    assert status.used_at is not None
    assert [(a.reason, a.count) for a in status.rejected] == [("already_used", 1)]


def test_jwks_health_metrics_and_openapi(service, client):
    """The service routes answer with public keys, health, metrics and the spec."""
    jwks = client.get("/.well-known/jwks.json").json()
    assert {k["alg"] for k in jwks["keys"]} == {"EdDSA", "ES256"}
    assert all("d" not in k for k in jwks["keys"])
    assert client.get("/healthz").json() == {"status": "ok"}
    client.get("/a/garbage")
    assert client.get("/metrics").status_code == 401
    scraper = service.access.issue(["metrics:read"]).token
    metrics = client.get("/metrics", headers=bearer(scraper))
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'actionlinks_links_rejected_total{reason="malformed"} 1' in metrics.text
    assert "actionlinks_request_duration_seconds_bucket" in metrics.text
    spec = client.get("/openapi.json").json()
    served = {
        (route.path, method.lower())
        for route in client.app.routes
        if route.path.startswith("/v1/")
        for method in route.methods - {"HEAD"}
    }
    described = {
        (path, method)
        for path, operations in spec["paths"].items()
        for method in operations
    }
    assert described == served
    assert len(served) == 17


def test_static_stylesheet_is_served(client):
    """The page stylesheet comes from the service itself (CSP style-src 'self')."""
    response = client.get("/static/actionlinks.css")
    assert response.status_code == 200
    assert "font-family" in response.text


# --- the HTTP API -------------------------------------------------------------------


@pytest.fixture
def writer(service):
    return service.access.issue(["links:write", "links:read"]).token


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_api_mints_links_from_the_base_url_whatever_the_host(client, writer):
    """POST /v1/links → 201; a poisoned Host header never changes the URL."""
    response = client.post(
        "/v1/links",
        json={
            "action": "password-reset",
            "sub": "user:42",
            "ttl": "10m",
            "data": {"a": 1},
        },
        headers={
            **bearer(writer),
            "Host": "evil.test",
            "X-Forwarded-Host": "evil.test",
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["url"].startswith(f"{BASE}/a/")
    assert body["url"].endswith(body["token"])
    assert {"jti", "expires_at"} <= set(body)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Basic dXNlcjpwdw=="}, "unauthorized"),
        ({"Authorization": "Bearer "}, "unauthorized"),
        ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
    ],
)
def test_api_without_a_valid_token_is_401_with_www_authenticate(client, headers, code):
    """Missing or invalid Bearer tokens get 401 and a Bearer challenge."""
    response = client.post(
        "/v1/links", json={"action": "invite", "sub": "u"}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"] == code
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_link_token_is_not_an_access_token(service, client):
    """A link token presented as Bearer is refused (typ differs)."""
    link = await mint(service)
    response = client.get(
        f"/v1/links/{link.claims.token_id}", headers=bearer(link.token)
    )
    assert response.status_code == 401


async def test_revoked_access_token_is_refused(service, client, writer):
    """tokens revoke makes the access token fail with 401."""
    claims = service.access._issuer.verify(
        writer, __import__("actionlinks.access", fromlist=["ACCESS"]).ACCESS
    )
    await service.access.revoke(claims.token_id)
    response = client.post(
        "/v1/links", json={"action": "invite", "sub": "u"}, headers=bearer(writer)
    )
    assert response.status_code == 401


def test_wrong_scope_is_403(service, client):
    """A read-only token cannot mint or revoke."""
    reader = service.access.issue(["links:read"]).token
    response = client.post(
        "/v1/links", json={"action": "invite", "sub": "u"}, headers=bearer(reader)
    )
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    assert 'scope="links:write"' in response.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"sub": "u"}, "action"),
        ({"action": "nope", "sub": "u"}, "action"),
        ({"action": "invite"}, "sub"),
        ({"action": "invite", "sub": ""}, "sub"),
        ({"action": "invite", "sub": 7}, "sub"),
        ({"action": "invite", "sub": "u", "ttl": "forever"}, "ttl"),
        ({"action": "invite", "sub": "u", "ttl": 10**9}, "ttl"),
        ({"action": "invite", "sub": "u", "ttl": -5}, "ttl"),
        ({"action": "invite", "sub": "u", "data": [1]}, "data"),
        ({"action": "invite", "sub": "u", "data": {"x": "y" * 5000}}, "data"),
        ({"action": "invite", "sub": "u", "alg": "RS256"}, "alg"),
        ({"action": "invite", "sub": "u", "extra": 1}, "extra"),
        ([1, 2], "body"),
    ],
)
def test_malformed_mint_bodies_are_422_naming_the_field(client, writer, body, field):
    """Each malformed body names the offending field."""
    response = client.post("/v1/links", json=body, headers=bearer(writer))
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_non_json_and_oversized_api_bodies(client, writer):
    """Broken JSON is 422 (field body), another type 415, over 64 KiB 413."""
    headers = {**bearer(writer), "content-type": "application/json"}
    assert (
        client.post("/v1/links", content=b"{", headers=headers).json()["field"]
        == "body"
    )
    assert (
        client.post("/v1/links", data={"a": "b"}, headers=bearer(writer)).status_code
        == 415
    )
    big = json.dumps({"action": "invite", "sub": "u", "data": {"x": "y" * 70_000}})
    assert client.post("/v1/links", content=big, headers=headers).status_code == 413


async def test_api_status_and_revocation(service, client, writer, clock):
    """GET /v1/links/{jti} reports the state; revoke by jti and by subject."""
    minted = client.post(
        "/v1/links", json={"action": "invite", "sub": "u"}, headers=bearer(writer)
    ).json()
    status = client.get(f"/v1/links/{minted['jti']}", headers=bearer(writer)).json()
    assert status["state"] == "issued"
    assert client.get("/v1/links/unknown", headers=bearer(writer)).status_code == 404
    revoked = client.post(
        "/v1/links/revoke", json={"jti": minted["jti"]}, headers=bearer(writer)
    )
    assert revoked.status_code == 200
    assert client.get(f"/a/{minted['token']}").status_code == 400
    status = client.get(f"/v1/links/{minted['jti']}", headers=bearer(writer)).json()
    assert status["state"] == "revoked"
    assert status["dispatch"] is None
    assert [a["reason"] for a in status["rejected_attempts"]] == ["revoked"]
    other = client.post(
        "/v1/links",
        json={"action": "email-confirm", "sub": "v"},
        headers=bearer(writer),
    ).json()
    clock.advance(timedelta(seconds=1))  # revocation covers links issued before now
    assert (
        client.post(
            "/v1/links/revoke", json={"sub": "v"}, headers=bearer(writer)
        ).status_code
        == 200
    )
    assert client.get(f"/a/{other['token']}").status_code == 400
    assert (
        client.post("/v1/links/revoke", json={}, headers=bearer(writer)).json()["field"]
        == "jti"
    )


async def test_chunked_body_over_the_limit_is_413(service, client):
    """Without a Content-Length the cap still applies while streaming."""
    link = await mint(service)

    def chunks():
        for _ in range(20):
            yield b"a" * 8192

    response = client.post(
        path(link),
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413


async def test_malformed_multipart_and_files_are_400(service, client):
    """Broken multipart bodies (parsed as empty: no nonce) and uploads are refused."""
    link = await mint(service)
    broken = client.post(
        path(link),
        content=b"--b\r\nnonsense",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert broken.status_code in (400, 403)
    upload = client.post(path(link), files={"nonce": ("n.txt", b"x", "text/plain")})
    assert upload.status_code == 400
    assert await used(service, link) is None


async def test_json_clients_get_form_failures_and_renewal_offers_as_json(
    service, client, clock
):
    """403 form failures and 410 renewal offers come as JSON when asked."""

    async def renew(link):
        pass

    service.registry.declare(
        Action(name="magic-signin", ttl=timedelta(minutes=15), renew=renew)
    )
    headers = {"Accept": "application/json"}
    link = await mint(service, "magic-signin")
    refused = client.post(path(link), data={}, headers=headers)
    assert refused.json() == {"status": "error", "error": "invalid_form"}
    clock.advance(timedelta(hours=1))
    expired = client.get(path(link), headers=headers).json()
    assert expired["error"] == "expired"
    renewed = client.post(
        "/renew", data={"renewal": expired["renewal"]}, headers=headers
    )
    assert renewed.json() == {"status": "ok", "action": "magic-signin"}


async def test_renewal_refuses_bodies_and_actions_without_delivery(
    service, client, clock
):
    """Oversized renewal bodies are 413; a renewal for an action that lost its
    delivery is 409; a ledger outage is 503."""

    async def renew(link):
        pass

    service.registry.declare(
        Action(name="magic-signin", ttl=timedelta(minutes=15), renew=renew)
    )
    link = await mint(service, "magic-signin")
    clock.advance(timedelta(hours=1))
    offer = client.get(path(link), headers={"Accept": "application/json"}).json()
    assert client.post("/renew", content=b"x" * 70_000).status_code == 413
    service.registry.declare(Action(name="magic-signin", ttl=timedelta(minutes=15)))
    assert client.post("/renew", data={"renewal": offer["renewal"]}).status_code == 409
    service.registry.declare(
        Action(name="magic-signin", ttl=timedelta(minutes=15), renew=renew)
    )
    service.store.database.close()
    assert client.post("/renew", data={"renewal": offer["renewal"]}).status_code == 503


async def test_failed_delivery_of_a_renewed_link_says_try_again(service, client, clock):
    """If the new link cannot be delivered the page is a 502, not a 500."""
    from actionlinks.errors import WebhookDeliveryError

    async def renew(link):
        raise WebhookDeliveryError("down", status_code=500)

    service.registry.declare(
        Action(name="magic-signin", ttl=timedelta(minutes=15), renew=renew)
    )
    link = await mint(service, "magic-signin")
    clock.advance(timedelta(hours=1))
    offer = client.get(path(link), headers={"Accept": "application/json"}).json()
    assert client.post("/renew", data={"renewal": offer["renewal"]}).status_code == 502


async def test_one_click_on_a_revoked_link_is_refused(service, client):
    """RFC 8058 POSTs go through the same checks: a revoked link is a 400."""
    link = await mint(service, "unsubscribe")
    await service.registry.revoke(link.claims.token_id)
    response = client.post(path(link), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400


def test_favicon_is_an_empty_answer(client):
    """Browsers asking for a favicon get 204, not a 404 in their console."""
    assert client.get("/favicon.ico").status_code == 204


async def test_handler_url_without_a_secret_fails_when_the_service_opens(service):
    """An action declared in code with a handler URL but no secret stops start-up."""
    service.registry.declare(
        Action(
            name="invite",
            ttl=timedelta(days=1),
            handler_url="https://app.example.test/hooks",
        )
    )
    app = create_app(service)
    with pytest.raises(ConfigurationError, match="handler_secret"), TestClient(app):
        pass


def test_app_from_env_serves_the_home_and_closes_it(tmp_path, monkeypatch, clock):
    """The uvicorn factory builds settings from the environment."""
    from actionlinks.web.app import app_from_env

    initialize(Settings(home=tmp_path), clock=clock)
    monkeypatch.setenv("ACTIONLINKS_HOME", str(tmp_path))
    with TestClient(app_from_env()) as client:
        assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/v1/links", b'{"action":"invite","sub":"\\ud800"}', "sub"),
        ("/v1/links", b'{"action":"invite","sub":"u","state":"\\udfff"}', "state"),
        ("/v1/links", b'{"action":"invite","sub":"a\\u0000b"}', "sub"),
        ("/v1/links", b'{"action":"invite\\n","sub":"u"}', "action"),
        ("/v1/links/revoke", b'{"jti":"\\ud800"}', "jti"),
        ("/v1/links/revoke", b'{"sub":"\\ud800x"}', "sub"),
    ],
)
def test_api_refuses_text_that_is_not_valid_unicode(client, writer, route, body, field):
    """Lone surrogates and control characters are a 422, never a 500."""
    headers = {**bearer(writer), "content-type": "application/json"}
    response = client.post(route, content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["field"] == field


def _nested(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    # A named function: hypothesis reads an extend lambda's source to check that
    # it recurses, and misreads one that spans lines (a deprecation error).
    return st.lists(inner, max_size=3) | st.dictionaries(
        st.text(max_size=8), inner, max_size=3
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    _nested,
    max_leaves=8,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    body=st.dictionaries(
        st.sampled_from(["action", "sub", "ttl", "data", "state", "alg", "jti", "x"]),
        _JSON,
        max_size=6,
    ),
    route=st.sampled_from(["/v1/links", "/v1/links/revoke"]),
)
def test_no_api_body_yields_a_server_error(client, writer, body, route):
    """Any JSON object posted to the API gets a 2xx or a 4xx, never a 5xx."""
    response = client.post(
        route,
        content=json.dumps(body, allow_nan=True).encode(),
        headers={**bearer(writer), "content-type": "application/json"},
    )
    assert response.status_code < 500, response.text


async def test_an_expired_link_is_renewed_at_most_once(service, client, clock):
    """Reopening an expired link gives new offers, but only one new link is sent."""
    delivered = []

    async def renew(link):
        delivered.append(link)

    service.registry.declare(
        Action(name="magic-signin", ttl=timedelta(minutes=15), renew=renew)
    )
    link = await mint(service, "magic-signin")
    clock.advance(timedelta(hours=1))
    headers = {"Accept": "application/json"}
    first = client.get(path(link), headers=headers).json()["renewal"]
    clock.advance(timedelta(seconds=5))
    second = client.get(path(link), headers=headers).json()["renewal"]
    assert first != second
    assert client.post("/renew", data={"renewal": first}).status_code == 200
    assert client.post("/renew", data={"renewal": second}).status_code == 409
    assert len(delivered) == 1


def test_every_error_of_the_tree_has_an_outcome():
    """Token errors are 4xx; only outages (503) and failed handlers (502) are 5xx."""
    import inspect

    from actionlinks import errors
    from actionlinks.web.app import outcome_for

    for cls in vars(errors).values():
        if not (inspect.isclass(cls) and issubclass(cls, errors.ActionLinksError)):
            continue
        exc = cls.__new__(cls)
        status = outcome_for(exc).status
        if issubclass(cls, errors.LedgerUnavailableError):
            assert status == 503
        elif issubclass(cls, errors.HandlerError | errors.WebhookError):
            assert status == 502
        else:
            assert 400 <= status < 500, cls


# --- issue 6: trust before growth -----------------------------------------------------


async def test_every_invalid_link_gets_the_same_answer(service, client):
    """Item 11: one generic 400, HTML and JSON alike; the reason goes elsewhere."""
    link = await mint(service)
    revoked = await mint(service, sub="v")
    await service.registry.revoke(revoked.claims.token_id)
    key = service.keys.signing_key("HS256")
    tokens = [*rejection_cases(link.token, key).values(), revoked.token]
    pages, bodies = set(), set()
    for token in tokens:
        page = client.get(f"/a/{token}")
        if page.status_code != 400:
            assert page.status_code == 414 or page.status_code < 500
            continue
        pages.add(page.text)
        bodies.add(client.get(f"/a/{token}", headers=JSON_ACCEPT).text)
    assert len(pages) == 1
    assert bodies == {'{"status":"error","error":"invalid_link"}'}
    status = await service.links.status(revoked.claims.token_id)
    assert [a.reason for a in status.rejected] == ["revoked"]


JSON_ACCEPT = {"Accept": "application/json"}


@pytest.mark.parametrize(
    "ttl", [10**20, "999999999w", -1, 0, "0s", 3650 * 86400 + 1, 1.5, True]
)
def test_api_ttl_out_of_range_is_422_naming_ttl(client, writer, ttl):
    """Item 8: huge, negative and zero lifetimes are 422 field ttl, never 500."""
    response = client.post(
        "/v1/links",
        json={"action": "invite", "sub": "u", "ttl": ttl},
        headers=bearer(writer),
    )
    assert response.status_code == 422
    assert response.json()["field"] == "ttl"


def test_api_refuses_a_state_nothing_could_check(client, writer):
    """Item 12: a state fingerprint for a service-mode action is 422 field state."""
    response = client.post(
        "/v1/links",
        json={"action": "password-reset", "sub": "u", "state": "hash"},
        headers=bearer(writer),
    )
    assert response.status_code == 422
    assert response.json()["field"] == "state"


def test_api_error_fields_come_from_the_error_not_its_message(tmp_path, clock):
    """Item 21: an action called metadata-sync does not make every error 'data'."""
    (tmp_path / "actionlinks.toml").write_text("[actions.metadata-sync]\nttl = '1h'\n")
    settings = Settings.from_env({"ACTIONLINKS_HOME": str(tmp_path)})
    initialize(settings, clock=clock)
    service = Service(settings, clock=clock)
    token = service.access.issue(["links:write"]).token
    cases = [
        ({"ttl": "2h"}, "ttl"),
        ({"state": "s"}, "state"),
        ({"sub": "a\u0000b"}, "sub"),
        ({"data": {"x": "y" * 2000}}, "data"),
    ]
    with TestClient(create_app(service)) as client:
        for extra, field in cases:
            body = {"action": "metadata-sync", "sub": "u", **extra}
            response = client.post("/v1/links", json=body, headers=bearer(token))
            assert (response.status_code, response.json()["field"]) == (422, field)


async def test_revoking_by_jti_never_reaches_an_access_token(service, client, writer):
    """Item 13: a links:write token cannot revoke an access token through links."""
    victim = service.access.issue(["links:read"])
    response = client.post(
        "/v1/links/revoke",
        json={"jti": victim.claims.token_id},
        headers=bearer(writer),
    )
    assert response.status_code == 200
    still = client.get("/v1/links/unknown", headers=bearer(victim.token))
    assert still.status_code == 404
    assert (
        client.post(
            "/v1/links/revoke",
            json={"jti": f"access:{victim.claims.token_id}"},
            headers=bearer(writer),
        ).json()["field"]
        == "jti"
    )


def test_revoke_then_mint_at_once_gives_a_live_link_through_the_api(
    service, client, writer, clock
):
    """Item 1: revoke a subject, mint 300 ms later in the same second: it works."""
    clock.advance(timedelta(milliseconds=100))
    revoke = client.post(
        "/v1/links/revoke", json={"sub": "ada"}, headers=bearer(writer)
    )
    assert revoke.status_code == 200
    clock.advance(timedelta(milliseconds=300))
    minted = client.post(
        "/v1/links", json={"action": "invite", "sub": "ada"}, headers=bearer(writer)
    ).json()
    assert client.get(f"/a/{minted['token']}").status_code == 200
    clock.advance(timedelta(milliseconds=300))
    client.post("/v1/links/revoke", json={"sub": "ada"}, headers=bearer(writer))
    assert client.get(f"/a/{minted['token']}").status_code == 400


def test_handler_failure_that_could_not_release_does_not_say_nothing_was_used(
    tmp_path, clock
):
    """Item 7: if the release fails too, the page does not promise a retry."""
    from actionlinks.errors import LedgerUnavailableError
    from actionlinks.ledger import MemoryLedger
    from actionlinks.stores import MemoryStore

    class CannotRelease(MemoryLedger):
        async def release(self, token_id, *, holder=None):
            raise LedgerUnavailableError("disk full")

    async def broken(claims, form):
        raise RuntimeError("the app is down")

    settings = Settings(home=tmp_path, base_url=BASE)
    initialize(settings, clock=clock)
    store = MemoryStore(clock=clock)
    store._ledger = CannotRelease(clock=clock)
    service = Service(settings, clock=clock, store=store)
    service.registry.declare(
        Action(name="invite", ttl=timedelta(days=1), handler=broken)
    )
    with TestClient(create_app(service)) as client:
        link = client.portal.call(lambda: mint(service, "invite"))
        nonce = nonce_of(client.get(path(link)))
        response = client.post(path(link), data={"nonce": nonce})
    assert response.status_code == 502
    assert "not used up" not in response.text
    assert "may be used up" in response.text


# --- the audit's findings ----------------------------------------------------------


async def test_a_dead_link_posted_without_a_nonce_answers_like_a_forged_one(
    service, client
):
    """Audit: revoked and used links answer 400/409 before the form is read."""
    revoked = await mint(service, "invite")
    await service.registry.revoke(revoked.claims.token_id)
    forged = client.post(f"/a/{revoked.token[:-3]}AAA", data={}, headers=JSON_ACCEPT)
    dead = client.post(path(revoked), data={}, headers=JSON_ACCEPT)
    assert (dead.status_code, dead.text) == (forged.status_code, forged.text)
    used_link = await mint(service, "password-reset", sub="u")
    service.registry.declare(Action(name="password-reset", ttl=timedelta(minutes=30)))
    nonce = nonce_of(client.get(path(used_link)))
    form = {
        "nonce": nonce,
        "password": "long-enough",
        "password_confirm": "long-enough",
    }
    assert client.post(path(used_link), data=form).status_code == 200
    again = client.post(path(used_link), data={"nonce": nonce, "password": "x"})
    assert again.status_code == 409
    assert 'name="password"' not in again.text


def test_invented_methods_do_not_invent_metric_series(service, client):
    """Audit: the latency histogram is labelled by known methods only."""
    for number in range(20):
        client.request(f"M{number:06d}", "/healthz")
    scraper = service.access.issue(["metrics:read"]).token
    text = client.get("/metrics", headers=bearer(scraper)).text
    assert "M000001" not in text
    assert 'method="other"' in text


async def test_a_trailing_slash_is_a_404_not_a_redirect_built_from_host(
    service, client
):
    """Audit: no 307 to a URL built from the Host header, token and all."""
    link = await mint(service)
    response = client.get(
        path(link) + "/", headers={"Host": "evil.example"}, follow_redirects=False
    )
    assert response.status_code == 404
    assert "location" not in response.headers


async def test_a_body_the_client_never_finished_is_a_400(service):
    """Audit: a disconnect while reading the form is a 4xx, never a 500."""
    link = await mint_open(service)
    sent = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    app = create_app(service)
    async with service:
        scope = {
            "type": "http",
            "method": "POST",
            "path": path(link),
            "raw_path": path(link).encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"content-type", b"application/x-www-form-urlencoded")],
            "client": ("127.0.0.1", 1),
            "server": ("testserver", 80),
            "scheme": "http",
            "http_version": "1.1",
        }
        await app(scope, receive, send)
    assert sent[0]["status"] == 400


async def mint_open(service, action="email-confirm"):
    async with service:
        return await service.registry.mint(action, subject="u")


async def test_multipart_text_must_be_utf_8(service, client):
    """Audit: a Latin-1 multipart field is refused like a urlencoded one."""
    link = await mint(service, "unsubscribe")
    body = (
        b'--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        b"One-Click\xe4\r\n--b--\r\n"
    )
    response = client.post(
        path(link),
        content=body,
        headers={"content-type": "multipart/form-data; boundary=b; charset=latin-1"},
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        # nested comments made the stdlib MIME parser recurse past its limit
        b"--b\r\nContent-Disposition: form-data; name=x"
        + b"(" * 1000
        + b"\r\n\r\nv\r\n--b--\r\n",
        # and 16,000 parameters cost it over a second of event-loop time
        b"--b\r\nContent-Disposition: form-data; name=x"
        + b";a=b" * 16200
        + b"\r\n\r\nv\r\n--b--\r\n",
        (
            b'--b\r\nContent-Disposition: form-data; name="a"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\nYWJj\r\n--b--\r\n"
        ),
        (
            b"--b\r\nContent-Disposition: form-data; name*=utf-8''%C3%A9"
            b"\r\n\r\nv\r\n--b--\r\n"
        ),
        (
            b'--b\r\nContent-Disposition: form-data; name="a"\r\n'
            b"Content-Type: text/plain; charset=latin-1\r\n\r\nv\r\n--b--\r\n"
        ),
        b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nv\r\n',
    ],
)
async def test_hostile_multipart_is_a_quick_400(service, client, body):
    """Second audit: the multipart reader is strict, linear and never a 500."""
    link = await mint(service, "unsubscribe")
    for target in (path(link), "/renew"):
        response = client.post(
            target,
            content=body,
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code == 400


def test_a_hostile_multipart_content_type_is_a_400(client):
    """Second audit: the header alone cannot crash the reader."""
    header = "multipart/form-data; boundary=b; x=" + "(" * 1000
    response = client.post("/renew", content=b"x", headers={"content-type": header})
    assert response.status_code == 400


async def test_browsers_multipart_forms_are_read(service, client):
    """What Chromium sends (quoted boundary, a closing CRLF) is read."""
    link = await mint(service, "unsubscribe")
    boundary = "----WebKitFormBoundaryA1b2"
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="List-Unsubscribe"\r\n\r\n'
        f"One-Click\r\n--{boundary}--\r\n"
    ).encode()
    response = client.post(
        path(link),
        content=body,
        headers={"content-type": f'multipart/form-data; boundary="{boundary}"'},
    )
    assert response.status_code == 200


async def test_a_link_held_by_a_running_use_says_so(service, client, clock):
    """A link whose use is under way answers 409 and says it is being used."""
    from actionlinks.ledger import Hold

    link = await mint(service, "invite")
    hold = Hold(holder="elsewhere", until=clock.now() + timedelta(minutes=5))
    await service.ledger.consume(
        link.claims.token_id, expires_at=link.claims.expires_at, hold=hold
    )
    page = client.get(path(link))
    assert page.status_code == 409
    assert "being used right now" in page.text
