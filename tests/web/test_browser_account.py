"""The Account dialog in the browser: changing the password, and deleting the account after
a confirmation that says what goes. Headless Chromium against the real server, with the
browser, page and helpers of test_browser.py."""

from __future__ import annotations

import pytest
import requests
from playwright.sync_api import Page, expect

from tests.web import test_browser as ui
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.browser

browser = ui.browser  # the module's Chromium, shared by the tests here
page = ui.page  # a fresh context per test; fails the test on uncaught page errors


def open_account(page: Page):
    page.get_by_role("button", name="Account", exact=True).click()
    dialog = page.get_by_role("dialog", name="Account")
    expect(dialog).to_be_visible()
    return dialog


def log_in(url: str, username: str, password: str) -> int:
    return requests.post(f"{url}/api/auth/login", timeout=10,
                         json={"username": username, "password": password}).status_code


def test_deleting_the_account_says_what_goes_and_asks_for_the_password(
        page: Page, live_server) -> None:
    ui.register(page, live_server.url, "farewell")
    ui.send(page, "Remember that my locker code is 4711.")
    dialog = open_account(page)
    warning = dialog.locator("#delete-warning")
    for words in ("conversations", "memory", "network", "cannot be undone", "Export"):
        expect(warning).to_contain_text(words)
    delete = dialog.get_by_role("button", name="Delete my account and all my data")

    dialog.get_by_label("Password", exact=True).fill(PASSWORD)
    delete.click()  # the box is not ticked: the browser stops the form
    expect(dialog).to_be_visible()
    dialog.get_by_label("I understand").check()
    dialog.get_by_label("Password", exact=True).fill("not my password")
    delete.click()
    expect(dialog.get_by_role("alert")).to_contain_text("not your current password")
    assert log_in(live_server.url, "farewell", PASSWORD) == 200  # nothing was deleted

    dialog.get_by_label("Password", exact=True).fill(PASSWORD)
    delete.click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    expect(page.locator("#auth-notice")).to_have_text(
        "Your account and all its data were deleted.")
    assert log_in(live_server.url, "farewell", PASSWORD) == 401


def test_a_password_change_is_confirmed_and_the_new_password_logs_in(
        page: Page, live_server) -> None:
    ui.register(page, live_server.url, "rotator")
    dialog = open_account(page)
    dialog.get_by_label("Current password").fill("wrong wrong wrong")
    dialog.get_by_label("New password").fill("brand new secret")
    dialog.get_by_role("button", name="Change password").click()
    expect(dialog.get_by_role("alert")).to_contain_text("not your current password")

    dialog.get_by_label("Current password").fill(PASSWORD)
    dialog.get_by_label("New password").fill("brand new secret")
    dialog.get_by_role("button", name="Change password").click()
    expect(dialog.get_by_role("status")).to_contain_text("Password changed.")
    expect(dialog.get_by_role("alert")).to_be_hidden()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    assert log_in(live_server.url, "rotator", PASSWORD) == 401
    assert log_in(live_server.url, "rotator", "brand new secret") == 200
