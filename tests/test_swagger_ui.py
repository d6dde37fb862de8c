"""Swagger UI at /api/ui/, used through "Try it out" in Debian's headless Chromium against a live chat-server."""

import contextlib
import os
from pathlib import Path

import pytest

from tests.live_server import live_server

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    sync_playwright = None

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
# The network is closed here: these keep Chromium from waiting on update, sync and QUIC probes.
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
TIMEOUT_MS = 30_000


def require(available: bool, reason: str) -> None:
    """Skip when the tool is missing, except in `tox -e browser` under CI, which sets CHAT_REQUIRE_BROWSER from CI.

    Plain CI=true is not enough: the `py` env runs under CI too and is meant to skip this test.
    """
    if available:
        return
    if os.environ.get("CHAT_REQUIRE_BROWSER"):
        pytest.fail(f"{reason} (CHAT_REQUIRE_BROWSER is set, so this is not skipped)")
    pytest.skip(reason)


@contextlib.contextmanager
def chromium():
    """Debian's Chromium, launched headless through Playwright, closed when the block ends."""
    require(sync_playwright is not None, "playwright is not installed; run `tox -e browser`")
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing; run tests/install_chromium.sh or `tox -e browser`")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page():
    with chromium() as browser:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        yield context.new_page()


def try_it_out(page, method: str, path: str, path_params: dict, form: dict):
    """Open an operation, press "Try it out", fill its fields, press "Execute" and return the operation's block."""
    block = page.locator(f".opblock-{method}").filter(has=page.locator(f'.opblock-summary-path[data-path="{path}"]'))
    block.locator(".opblock-summary").first.click()
    block.get_by_role("button", name="Try it out").click()
    for name, value in path_params.items():
        block.locator(f'tr[data-param-name="{name}"][data-param-in="path"] input').fill(value)
    body = block.locator(".opblock-section-request-body")
    for name, value in form.items():
        body.locator(f'tr[data-property-name="{name}"] input').fill(value)
    block.get_by_role("button", name="Execute").click()
    return block


def live_response(block):
    """The row Swagger UI adds under "Server response" once a request has come back."""
    return block.locator(".live-responses-table tr.response")


def test_register_then_login_through_try_it_out(page, tmp_path):
    credentials = {"name": "swagger", "password": "correct horse"}
    with live_server() as server:
        page.goto(server.api_url + "/ui/")
        expect(page.locator(".information-container .title")).to_contain_text("Chat API")

        registered = try_it_out(
            page,
            "post",
            "/user/{user_id}",
            path_params={"user_id": "0"},
            form={**credentials, "email": "swagger@example.com"},
        )
        expect(live_response(registered).locator(".response-col_status")).to_have_text("201", timeout=TIMEOUT_MS)
        expect(live_response(registered).locator(".response-col_description")).to_contain_text('"status": "ok"')

        logged_in = try_it_out(page, "post", "/login", path_params={}, form=credentials)
        expect(live_response(logged_in).locator(".response-col_status")).to_have_text("200", timeout=TIMEOUT_MS)
        expect(live_response(logged_in).locator(".response-col_description")).to_contain_text('"status": "ok"')
        assert {"user_id", "token"} <= {cookie["name"] for cookie in page.context.cookies()}

        registered.screenshot(path=tmp_path / "register-201.png")
        logged_in.screenshot(path=tmp_path / "login-200.png")
        page.screenshot(path=tmp_path / "swagger-ui.png", full_page=True)
