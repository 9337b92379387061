"""The admin in the browser: who is admin, the sign-up switch and the accounts, another
account made admin and back and deleted after a confirmation, what the sign-in screen says
when sign-up is closed, and a chat sent while the server stops. Headless Chromium against
the real server, with the browser, page and helpers of test_browser.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web import test_browser as ui
from tests.web.conftest import register
from tests.web.test_engine_restart import wait_until

pytestmark = pytest.mark.browser

browser = ui.browser  # the module's Chromium, shared by the tests here
page = ui.page  # a fresh context per test; fails the test on uncaught page errors


def signup_switch(page: Page):
    return page.get_by_role("checkbox", name="Anyone who reaches this server can create")


def test_the_admin_closes_sign_up_and_the_sign_in_screen_says_so(
    page: Page, browser: Browser, live_server
) -> None:
    ui.register(page, live_server.url, "boss")  # the first account
    expect(page.locator("#user-admin")).to_have_text("admin")
    page.get_by_role("tab", name="Admin").click()
    expect(signup_switch(page)).to_be_checked()
    expect(page.locator("#admin-users tr")).to_have_count(1)
    expect(page.locator("#admin-users tr").first).to_contain_text("boss")
    expect(page.locator("#admin-users tr").first).to_contain_text("admin")

    signup_switch(page).uncheck()
    expect(page.locator("#admin-signup-note")).to_contain_text("Closed")
    visitor = browser.new_context().new_page()
    try:
        visitor.goto(live_server.url)
        expect(visitor.get_by_text("Sign-up is closed on this server")).to_be_visible()
        expect(visitor.get_by_role("button", name="Create account")).to_be_hidden()
        expect(visitor.get_by_role("button", name="Log in")).to_be_visible()

        signup_switch(page).check()
        expect(page.locator("#admin-signup-note")).to_contain_text("Open")
        visitor.reload()
        expect(visitor.get_by_text("Sign-up is closed on this server")).to_be_hidden()
        ui.register(visitor, live_server.url, "guest")
        expect(visitor.get_by_role("tab", name="Memory")).to_be_visible()
        expect(visitor.get_by_role("tab", name="Admin")).to_have_count(0)  # not the admin
        expect(visitor.locator("#user-admin")).to_be_hidden()
    finally:
        visitor.context.close()

    page.get_by_role("tab", name="Memory").click()
    page.get_by_role("tab", name="Admin").click()  # shown again: the accounts are fetched again
    expect(page.locator("#admin-users tr")).to_have_count(2)
    expect(page.locator("#admin-users tr").last).to_contain_text("guest")
    expect(page.locator("#admin-users tr").last).to_contain_text("user")
    ui.shoot(page, "admin.png")


def test_the_admin_makes_a_colleague_admin_and_back_then_deletes_them_after_confirming(
    browser: Browser, tmp_path: Path
) -> None:
    errors: list[str] = []
    with ui.own_server(browser, tmp_path) as (server, context, _):
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        ui.register(page, server.url, "chief")  # the first account: the admin
        colleague = register(server.url, "colleague")
        page.get_by_role("tab", name="Admin").click()
        rows = page.locator("#admin-users tr")
        expect(rows).to_have_count(2)
        expect(rows.first).to_contain_text("you")
        expect(rows.first.get_by_role("button")).to_have_count(0)  # no buttons for oneself

        page.get_by_role("button", name="Make admin: colleague").click()
        expect(page.locator("#admin-status")).to_have_text("colleague is now an admin.")
        expect(rows.last).to_contain_text("admin")
        expect(page.get_by_role("button", name="Remove admin: colleague")).to_be_focused()
        page.keyboard.press("Enter")
        expect(page.locator("#admin-status")).to_have_text("colleague is no longer an admin.")
        expect(page.get_by_role("button", name="Make admin: colleague")).to_be_focused()

        page.get_by_role("button", name="Delete colleague").click()
        dialog = page.get_by_role("dialog", name="Delete colleague's account?")
        expect(dialog).to_contain_text("This permanently deletes the account colleague")
        password = dialog.get_by_label("Your password")
        expect(password).to_be_focused()
        password.fill("not my password")
        confirm = dialog.get_by_role("button", name="Delete colleague and all its data")
        confirm.click()
        expect(dialog.get_by_role("alert")).to_have_text("That is not your current password.")
        expect(rows).to_have_count(2)
        assert colleague.get(server.url + "/api/auth/me", timeout=10).status_code == 200

        password.fill(ui.PASSWORD)
        confirm.click()
        expect(dialog).to_be_hidden()
        expect(page.locator("#admin-status")).to_have_text(
            "colleague's account and all its data were deleted.")
        expect(rows).to_have_count(1)
        expect(page.get_by_role("heading", name="Accounts")).to_be_focused()
        assert colleague.get(server.url + "/api/auth/me", timeout=10).status_code == 401
        assert errors == [], f"uncaught errors in the page: {errors}"


def test_sign_up_set_by_the_server_configuration_is_shown_read_only(
    browser: Browser, tmp_path: Path
) -> None:
    with ui.own_server(browser, tmp_path, SORNMEMORY_SIGNUP="closed") as (server, context, _):
        page = context.new_page()
        ui.register(page, server.url, "operator")  # the first account may always register
        page.get_by_role("tab", name="Admin").click()
        expect(signup_switch(page)).not_to_be_checked()
        expect(signup_switch(page)).to_be_disabled()
        expect(page.locator("#admin-signup-note")).to_contain_text(
            "Set by the server's configuration (SORNMEMORY_SIGNUP)")


def test_a_message_sent_while_the_server_stops_stays_in_the_box_with_the_reason(
    browser: Browser, tmp_path: Path
) -> None:
    with ui.own_server(browser, tmp_path) as (server, context, nim):
        writing = context.new_page()
        ui.register(writing, server.url, "hurried")
        other_tab = context.new_page()  # the same login, idle
        other_tab.goto(server.url)
        expect(other_tab.locator("#connection")).to_have_attribute("data-state", "connected")
        nim.reply = " ".join(f"word{k}" for k in range(100))
        nim.mode, nim.drip_interval = "drip", 0.05  # a reply of ~5 s keeps the server up
        writing.get_by_label("Message", exact=True).fill("Tell me everything")
        writing.get_by_label("Message", exact=True).press("Enter")
        expect(writing.locator(".message.assistant .markdown")).to_contain_text("word3")

        server.process.terminate()  # a graceful stop (SIGTERM), as systemd sends
        wait_until(lambda: "new chats are refused" in server.log(), timeout=10)
        composer = other_tab.get_by_label("Message", exact=True)
        composer.fill("One more thing")
        composer.press("Enter")
        expect(other_tab.get_by_role("alert")).to_contain_text("The server is restarting")
        expect(composer).to_have_value("One more thing")  # kept, to send again
        expect(other_tab.locator(".message")).to_have_count(0)
