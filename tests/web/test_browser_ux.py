"""What a person finds when using the page: kept drafts, focus that stays put, visible errors
and connection trouble, the latest message in view. Headless Chromium against the real server,
with the browser, page and helpers of test_browser.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.fake_nim import FakeNIM
from tests.web import test_browser as ui
from tests.web.conftest import start_server, stop_server

pytestmark = pytest.mark.browser

browser = ui.browser  # the module's Chromium, shared by the tests here
page = ui.page  # a fresh context per test; fails the test on uncaught page errors


def composer(page: Page):
    return page.get_by_label("Message", exact=True)


def test_a_refused_message_goes_back_into_the_box_with_the_reason(page: Page, live_server) -> None:
    ui.register(page, live_server.url, "paster")
    pasted = ("A pasted log line that goes on and on. " * 2600).strip()  # 101 399 characters
    composer(page).fill(pasted)
    composer(page).press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("at most")
    assert composer(page).input_value() == pasted, "the pasted text was lost"
    expect(page.locator(".message")).to_have_count(0)  # nothing was sent or stored
    expect(page.get_by_role("button", name="Send")).to_be_visible()

    composer(page).fill("A short one instead")
    composer(page).press("Enter")
    expect(page.locator(".message.user .text")).to_have_text(["A short one instead"])
    expect(page.get_by_role("alert")).to_have_count(0)


def test_keyboard_focus_is_not_lost_when_the_pressed_button_goes_away(
    page: Page, live_server
) -> None:
    ui.register(page, live_server.url, "keyboarder")
    composer(page).fill("First message")
    page.get_by_role("button", name="Send").press("Enter")  # Send is hidden while writing
    expect(page.locator(".message.assistant")).to_have_count(1)
    expect(composer(page)).to_be_focused()

    live_server.nim.reply = " ".join(f"word{k}" for k in range(200))
    live_server.nim.mode = "drip"
    page.get_by_role("button", name="Regenerate").press("Enter")
    reply = page.locator(".message.assistant")
    expect(reply.locator(".markdown")).to_contain_text("word3")  # being rewritten
    expect(reply.get_by_role("button", name="Regenerate")).to_have_count(0)  # not while writing
    expect(reply).to_be_focused()  # the reply took the place of the pressed button
    page.keyboard.press("Escape")
    expect(reply).to_contain_text("Stopped.")
    expect(reply).to_be_focused()


def test_a_remembered_message_keeps_its_line_breaks(page: Page, live_server) -> None:
    ui.register(page, live_server.url, "poet")
    ui.send(page, "Roses are red\nviolets are blue")
    page.get_by_role("tab", name="Memory").click()
    text = page.locator("#memory-results .memory-text", has_text="Roses")
    expect(text).to_be_visible()
    assert text.inner_text() == "Roses are red\nviolets are blue"  # as rendered: two lines


def test_a_failed_import_is_shown_as_an_error(page: Page, live_server, tmp_path: Path) -> None:
    ui.register(page, live_server.url, "importer")
    page.get_by_role("tab", name="Memory").click()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json", encoding="utf-8")
    page.locator("#memory-import").set_input_files(broken)
    status = page.locator("#memory-status")
    expect(status).to_contain_text("Import failed")
    danger = page.evaluate("getComputedStyle(document.body).getPropertyValue('--danger')")
    expect(status).to_have_css("color", _rgb(danger))

    export = tmp_path / "export.json"
    export.write_text(json.dumps({"format": "sornmemory.memory", "version": 1, "episodes": [
        {"text": "I grow tomatoes on the balcony", "role": "user", "timestamp": 1.7e9}]}))
    page.locator("#memory-import").set_input_files(export)
    expect(status).to_contain_text("Imported 1")
    expect(status).not_to_have_css("color", _rgb(danger))


def _rgb(hex_colour: str) -> str:
    value = int(hex_colour.strip().lstrip("#"), 16)
    return f"rgb({value >> 16}, {(value >> 8) & 255}, {value & 255})"


def test_on_a_phone_an_opened_conversation_shows_its_latest_message(
    page: Page, live_server
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    ui.register(page, live_server.url, "scroller")
    for k in range(4):
        ui.send(page, f"Message number {k}: " + "a fairly long sentence to fill the screen. " * 6)
    page.reload()  # a new visit: the page opens on a new, empty conversation
    page.get_by_role("tab", name="Chats").click()
    page.locator("#conversation-list .conversation").first.click()
    expect(page.locator(".message.assistant")).to_have_count(4)
    expect(page.locator(".message.assistant").last).to_be_in_viewport()

    composer(page).fill("One more, while I watch the network")
    composer(page).press("Enter")
    page.get_by_role("tab", name="Network").click()  # the reply arrives while Chat is hidden
    page.wait_for_function("() => document.querySelector('#stop').hidden")
    page.get_by_role("tab", name="Chat", exact=True).click()
    expect(page.locator(".message.assistant")).to_have_count(5)
    expect(page.locator(".message.assistant").last).to_be_in_viewport()


def test_when_the_server_restarts_the_page_says_so_keeps_the_draft_and_recovers(
    browser: Browser, tmp_path: Path
) -> None:
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim)
        context = browser.new_context(viewport={"width": 390, "height": 844})
        try:
            page = context.new_page()
            ui.register(page, server.url, "traveller")
            ui.send(page, "I am about to lose the connection")
            server.kill()
            composer(page).fill("Typed while the server was away")
            expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
            expect(page.get_by_text("Not connected")).to_be_visible()  # said where one looks
            expect(page.get_by_role("button", name="Send")).to_be_disabled()
            composer(page).press("Enter")
            expect(composer(page)).to_have_value("Typed while the server was away")

            port = int(server.url.rsplit(":", 1)[1])
            server = start_server(tmp_path, nim, port=port)  # same data: the session holds
            expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
            expect(page.get_by_text("Not connected")).to_be_hidden()
            composer(page).press("Enter")
            expect(page.locator(".message.user .text")).to_have_count(2)
            expect(page.locator(".message.assistant").last).not_to_contain_class("busy")
            expect(page.locator(".message.assistant").last.get_by_role("alert")).to_have_count(0)
        finally:
            context.close()
            stop_server(server)


TABLE_REPLY = """| Name | City | Hobby | Since | Notes |
|---|---|---|---|---|
| Ingrid | Reykjavik | beekeeping | 2019 | three hives on a rooftop in the old harbour |
| Lena | Basel | hiking | 2021 | the Haute Route from Chamonix to Zermatt |"""

# Each table cell -> how many lines its longest word takes (1 unless a word was broken).
BROKEN_WORDS = """(table) => [...table.querySelectorAll("th, td")].map((cell) => {
  const range = document.createRange();
  let most = 1;
  for (const match of cell.textContent.matchAll(/\\S+/g)) {
    range.setStart(cell.firstChild, match.index);
    range.setEnd(cell.firstChild, match.index + match[0].length);
    const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
    most = Math.max(most, tops.size);
  }
  return most;
})"""


def test_on_a_phone_a_table_keeps_its_words_whole_and_the_page_does_not_scroll_sideways(
    page: Page, live_server
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    live_server.nim.reply = TABLE_REPLY
    ui.register(page, live_server.url, "tabler")
    ui.send(page, "Who are my people?")
    table = page.locator(".message.assistant .markdown table")
    expect(table.locator("td")).to_have_count(10)
    assert set(table.evaluate(BROKEN_WORDS)) == {1}, "a word in the table was broken apart"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_on_a_phone_the_top_bar_does_not_jump_while_a_reply_is_written(
    page: Page, live_server
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    nim = live_server.nim
    nim.reply = " ".join(f"word{k}" for k in range(200))
    nim.mode = "drip"
    ui.register(page, live_server.url, "reader")
    topbar = page.locator(".topbar")
    idle_height = topbar.bounding_box()["height"]
    composer(page).fill("Tell me a long story")
    composer(page).press("Enter")
    expect(page.locator(".message.assistant .markdown")).to_contain_text("word3")
    expect(page.locator("#activity")).to_have_text("Writing…")  # still there for screen readers
    assert topbar.bounding_box()["height"] == idle_height
    page.get_by_role("button", name="Stop").click()


def test_deleting_a_memory_by_keyboard_keeps_the_focus_in_place(page: Page, live_server) -> None:
    ui.register(page, live_server.url, "tidier")
    ui.send(page, "My locker code is 4711")
    page.get_by_role("tab", name="Memory").click()
    found = page.locator("#memory-results .memory-item", has_text="locker")
    episode_id = found.get_attribute("data-episode-id")
    item = page.locator(f'#memory-results .memory-item[data-episode-id="{episode_id}"]')
    delete = item.get_by_role("button", name="Delete memory")
    delete.press("Enter")
    delete.press("Enter")  # the second press confirms
    expect(item).to_contain_text("Memory deleted")
    expect(item.get_by_text("Memory deleted")).to_be_focused()


def test_a_long_memory_starts_folded_and_opens_in_full(page: Page, live_server) -> None:
    ui.register(page, live_server.url, "logger")
    log = "\n".join(f"12:00:{k:02d} worker {k} finished the nightly backup job" for k in range(60))
    ui.send(page, log)
    page.get_by_role("tab", name="Memory").click()
    text = page.locator("#memory-results .memory-text", has_text="nightly backup")
    line_height = float(text.evaluate("(p) => parseFloat(getComputedStyle(p).lineHeight)"))
    assert text.bounding_box()["height"] <= 6.5 * line_height, "a 60-line memory fills the page"

    item = text.locator("..")
    item.get_by_role("button", name="Show all").click()
    expect(item.get_by_role("button", name="Show less")).to_have_attribute("aria-expanded", "true")
    assert text.bounding_box()["height"] >= 60 * line_height


def test_changing_conversation_while_a_reply_is_written_says_why_it_waits(
    page: Page, live_server
) -> None:
    nim = live_server.nim
    ui.register(page, live_server.url, "hopper")
    ui.send(page, "An earlier conversation")
    page.get_by_role("button", name="New conversation").click()
    nim.reply = " ".join(f"word{k}" for k in range(200))
    nim.mode = "drip"
    composer(page).fill("Tell me a long story")
    composer(page).press("Enter")
    expect(page.locator(".message.assistant .markdown")).to_contain_text("word3")
    page.get_by_role("button", name="An earlier conversation").click()
    expect(page.get_by_role("alert")).to_contain_text("stop it")
    expect(page.locator(".message.user .text")).to_have_text(["Tell me a long story"])

    page.keyboard.press("Escape")
    expect(page.locator(".message.assistant")).to_contain_text("Stopped.")
    expect(page.get_by_role("alert")).to_have_count(0)
    page.get_by_role("button", name="An earlier conversation").click()
    expect(page.locator(".message.user .text")).to_have_text(["An earlier conversation"])


def test_network_stats_that_arrive_late_do_not_replace_newer_ones(page: Page, live_server) -> None:
    """The page asks GET /api/network when it loads, and each turn's `stats` event follows.
    An answer computed before a turn but delivered after its event (a busy worker, a slow
    link) must not put the older count back: the page then waited for ever for a newer one."""
    ui.register(page, live_server.url, "latecomer")
    ui.send(page, "My bike is green.")
    before_the_turn = page.request.get(f"{live_server.url}/api/network").json()
    held = []
    page.route("**/api/network", lambda route: held.append(route))
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    ui.send(page, "My bike has three gears.")
    newer = ui.memories(page)
    assert newer > before_the_turn["episodes"]
    held[0].fulfill(json=before_the_turn)  # the answer of the boot's request, late
    page.wait_for_timeout(300)
    assert ui.memories(page) == newer
