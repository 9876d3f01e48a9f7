"""End to end in a real headless browser (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import sync_playwright
from servers import Receiver, ServeProcess

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


def chromium_path() -> str:
    found = shutil.which("chromium")
    assert found, "Debian's chromium is not installed (.ci/run installs it)"
    return found


def test_person_opens_confirms_and_a_reload_says_already_used(tmp_path):
    """Open an e-mailed link, see the confirm page, click, see success; reopen: used."""
    secret = generate_secret()
    with Receiver(secret) as receiver:
        (tmp_path / "actionlinks.toml").write_text(
            "[actions.email-confirm]\n"
            f'handler_url = "{receiver.url}"\n'
            f'handler_secret = "{secret}"\n'
        )
        server = ServeProcess(tmp_path, env={"ACTIONLINKS_WEBHOOK_ALLOW_PRIVATE": "1"})
        try:
            url = server.mint("email-confirm", "ada@example.test")
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=chromium_path(), args=CHROMIUM_ARGS
                )
                page = browser.new_page()
                errors: list[str] = []
                page.on("console", lambda m: errors.append(m.text))
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
                reopened = page.goto(url)
                assert reopened.status == 409
                browser.close()
        finally:
            server.stop()
    assert [e["data"]["sub"] for e in receiver.events] == ["ada@example.test"]
    assert not [e for e in errors if "Content Security Policy" in e]
    for shot in ("1-confirm.png", "2-done.png", "3-already-used.png"):
        assert (tmp_path / shot).stat().st_size > 1000


def test_password_reset_in_the_browser_checks_both_fields(tmp_path):
    """The reset page asks twice; a mismatch is refused, then a match succeeds."""
    server = ServeProcess(tmp_path)
    try:
        url = server.mint("password-reset", "user:42")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_path(), args=CHROMIUM_ARGS
            )
            page = browser.new_page()
            page.goto(url)
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
            browser.close()
    finally:
        server.stop()
