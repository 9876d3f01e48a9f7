"""End to end in a real headless browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
import shutil

import httpx
import pytest
from mailsink import MailSink
from playwright.sync_api import sync_playwright
from servers import Receiver, ServeProcess, serve_with_handler

from actionlinks.webhooks import generate_secret

pytestmark = pytest.mark.integration

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def page():
    executable = shutil.which("chromium")
    if executable is None:
        # On a developer's machine without chromium the browser tests say why they
        # did not run; in CI (.ci/run sets CI and installs chromium) they must run.
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail("CI is set but Debian's chromium is not installed")
        pytest.skip("Debian's chromium is absent: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


def test_person_opens_confirms_and_a_reload_says_already_used(tmp_path, page):
    """Open an e-mailed link, see the confirm page, click, see success; reopen: used."""
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    with Receiver(generate_secret()) as receiver:
        server = serve_with_handler(tmp_path, receiver, "email-confirm")
        try:
            url = server.mint("email-confirm", "ada@example.test")
            response = page.goto(url + "?utm_source=newsletter")
            assert response.status == 200
            assert page.title() == "Confirm your e-mail address"
            page.screenshot(path=str(tmp_path / "1-confirm.png"))
            page.get_by_role("button", name="Confirm my address").click()
            page.wait_for_load_state()
            assert "Your e-mail address is confirmed." in page.content()
            page.screenshot(path=str(tmp_path / "2-done.png"))
            again = page.reload()
            assert again.status == 409
            assert "already used" in page.content()
            page.screenshot(path=str(tmp_path / "3-already-used.png"))
            assert page.goto(url).status == 409
        finally:
            server.stop()
    assert [e["data"]["sub"] for e in receiver.events] == ["ada@example.test"]
    assert not [m for m in console if "Content Security Policy" in m]
    for shot in ("1-confirm.png", "2-done.png", "3-already-used.png"):
        assert (tmp_path / shot).stat().st_size > 1000


def test_password_reset_in_the_browser_checks_both_fields(tmp_path, page):
    """The reset page asks twice; a mismatch is refused, then a match succeeds."""
    server = ServeProcess(tmp_path)
    try:
        page.goto(server.mint("password-reset", "user:42"))
        page.fill("#password", "correct horse")
        page.fill("#password_confirm", "correct hors")
        page.get_by_role("button", name="Set new password").click()
        page.wait_for_load_state()
        assert "do not match" in page.content()
        page.screenshot(path=str(tmp_path / "reset-mismatch.png"))
        page.fill("#password", "correct horse")
        page.fill("#password_confirm", "correct horse")
        page.get_by_role("button", name="Set new password").click()
        page.wait_for_load_state()
        assert "Your password has been changed." in page.content()
        page.screenshot(path=str(tmp_path / "reset-done.png"))
    finally:
        server.stop()


@pytest.mark.parametrize(("width", "height"), [(375, 740), (1280, 800)])
def test_a_mailed_password_reset_renders_well_and_its_button_opens_the_page(
    tmp_path, page, width, height
):
    """The HTML part of a real mail (POST /v1/emails → aiosmtpd) in chromium at
    phone and desktop widths: heading, visible button, no sideways scrolling;
    the button leads to the reset page, which sets the password."""
    with MailSink() as sink:
        server = ServeProcess(
            tmp_path,
            env={
                "ACTIONLINKS_SMTP_HOST": "127.0.0.1",
                "ACTIONLINKS_SMTP_PORT": str(sink.port),
                "ACTIONLINKS_SMTP_FROM": "Acme <links@acme.test>",
            },
        )
        try:
            token = server.cli("tokens", "issue", "--scope", "mail:send").stdout
            answer = httpx.post(
                f"{server.base_url}/v1/emails",
                json={"action": "password-reset", "to": "ada@example.org", "sub": "u1"},
                headers={"Authorization": f"Bearer {token.strip()}"},
            )
            assert answer.status_code == 202, answer.text
            [received] = sink.wait_for(1)
            html = received.message.get_body(("html",)).get_content()
            page.set_viewport_size({"width": width, "height": height})
            page.set_content(html)
            shot = tmp_path / f"mail-{width}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert page.get_by_role("heading", name="Reset your password").is_visible()
            button = page.get_by_role("link", name="Choose a new password")
            assert button.is_visible()
            box = button.bounding_box()
            assert box["x"] >= 0
            assert box["x"] + box["width"] <= width
            assert box["height"] >= 40  # a finger-sized target
            overflow = page.evaluate(
                "document.scrollingElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0
            button.click()
            page.wait_for_load_state()
            assert page.title() == "Choose a new password"
            page.fill("#password", "correct horse")
            page.fill("#password_confirm", "correct horse")
            page.get_by_role("button", name="Set new password").click()
            page.wait_for_load_state()
            assert "Your password has been changed." in page.content()
        finally:
            server.stop()
    assert shot.stat().st_size > 5000
