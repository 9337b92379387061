"""What the page shows when the LLM does not simply answer: a reply cut by the model's token
limit, a rate limit being waited out. Headless Chromium against the real server and FakeNIM,
with the browser, page and helpers of test_browser.py."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.web import test_browser as ui

pytestmark = pytest.mark.browser

browser = ui.browser  # the module's Chromium, shared by the tests here
page = ui.page  # a fresh context per test; fails the test on uncaught page errors


def test_a_reply_cut_by_the_token_limit_says_so_also_after_a_reload(
    page: Page, live_server
) -> None:
    nim = live_server.nim
    nim.mode, nim.reply = "length", "One two three four five six"
    ui.register(page, live_server.url, "counter")
    ui.send(page, "Count to six for me")
    reply = page.locator(".message.assistant").last
    expect(reply.locator(".markdown")).to_have_text("One two three")
    note = reply.locator(".status .note")
    expect(note).to_contain_text("length limit")
    expect(reply.get_by_role("button", name="Regenerate")).to_be_visible()
    expect(reply.get_by_role("alert")).to_have_count(0)  # a real reply, not a failure

    page.reload()  # a new visit: the page opens on a new, empty conversation
    page.locator("#conversation-list .conversation").first.click()
    reply = page.locator(".message.assistant").last
    expect(reply.locator(".markdown")).to_have_text("One two three")
    expect(reply.locator(".status .note")).to_contain_text("length limit")

    nim.mode = "ok"
    reply.get_by_role("button", name="Regenerate").click()
    expect(reply.locator(".markdown")).to_have_text(nim.reply)
    expect(reply.locator(".status .note")).to_have_count(0)


def test_a_rate_limit_being_waited_out_is_shown_in_the_reply(page: Page, live_server) -> None:
    """The server refuses (429, Retry-After: 3): the reply says it waits for the rate limit,
    counting down, instead of dots alone for seconds; then the reply comes."""
    nim = live_server.nim
    ui.register(page, live_server.url, "patient")
    nim.mode, nim.retry_after, nim.reply = "429-retry-after", "3", "Sorry for the wait."
    nim.fail_times = len(nim.calls) + 1
    page.get_by_label("Message", exact=True).fill("Hello?")
    page.get_by_label("Message", exact=True).press("Enter")
    reply = page.locator(".message.assistant").last
    waiting = reply.locator(".status .note")
    expect(waiting).to_have_text("Waiting for the LLM's rate limit (3 s)…")
    expect(waiting).to_be_visible()
    expect(waiting).to_have_text("Waiting for the LLM's rate limit (2 s)…")  # counting down
    expect(reply.locator(".markdown")).to_have_text("Sorry for the wait.")
    expect(reply.locator(".status")).to_be_empty()
    expect(reply).not_to_contain_class("busy")
