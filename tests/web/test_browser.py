"""The browser UI, driven end to end in headless Chromium against the real server.

The tests share one real `sornmemory serve` (the `live_server` fixture, pointed at FakeNIM),
each as a new user, and use the page as a person would: keyboard and clicks, reading what is
on screen. Set
SORNMEMORY_UI_SCREENSHOTS=<dir> to also save the screenshots used in docs/UI.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.support.fake_nim import FakeNIM
from tests.web.conftest import start_server, stop_server
from webapp.bench.liveserver import ServerProcess
from webapp.engine.frames import encode_frame

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
PASSWORD = "correct horse battery"
REPLY_WAIT_MS = 20_000
DESKTOP = {"width": 1360, "height": 860}
SCREENSHOTS = os.environ.get("SORNMEMORY_UI_SCREENSHOTS")
expect.set_options(timeout=REPLY_WAIT_MS)  # a 2-core CI machine may be busy: wait generously

# Colours the canvases paint with (static/js/network.js): E and I spikes, histogram bars.
E_BLUE, I_ORANGE, BAR_GREEN = 0x52A8FF, 0xFF8A4C, 0x7FD1B9
# ([selector, [rgb, ...]]) -> how many pixels of the canvas have (nearly) each colour.
COUNT_COLOURS = """([selector, colours]) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const near = (k, rgb) => [16, 8, 0].every(
    (shift, c) => Math.abs(data[k + c] - ((rgb >> shift) & 255)) <= 24);
  const counts = colours.map(() => 0);
  for (let k = 0; k < data.length; k += 4) {
    colours.forEach((rgb, at) => { if (near(k, rgb)) counts[at]++; });
  }
  return counts;
}"""


@pytest.fixture(scope="module")
def browser() -> Browser:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@contextmanager
def own_server(browser: Browser, tmp_path: Path, viewport: dict | None = None, **env
               ) -> Iterator[tuple[ServerProcess, BrowserContext, FakeNIM]]:
    """A server of the test's own (its own settings, or one the test stops) and a browser
    context on it; the context closes first (its sockets hang up), then the server."""
    with FakeNIM() as nim:
        server = start_server(tmp_path, nim, **env)
        context = browser.new_context(viewport=viewport or DESKTOP)
        try:
            yield server, context, nim
        finally:
            context.close()
            stop_server(server)


@pytest.fixture
def page(browser: Browser, live_server) -> Page:
    """A fresh browser context; closed before the server stops (its sockets hang up first)."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(REPLY_WAIT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"


def register(page: Page, url: str, username: str) -> None:
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")


def memories(page: Page) -> int:
    """The memory count the network panel shows (updated by the `stats` that ends a turn)."""
    shown = page.locator("#network-stats dd").first
    return int(shown.inner_text().replace(",", "")) if shown.count() else 0


def send(page: Page, text: str) -> None:
    """Type a message and send it with Enter; wait until its reply is complete and the turn
    has stored it in memory."""
    replies = page.locator(".message.assistant")
    before, stored = replies.count(), memories(page)
    page.get_by_label("Message", exact=True).fill(text)
    page.get_by_label("Message", exact=True).press("Enter")
    expect(replies).to_have_count(before + 1)
    expect(replies.last).not_to_contain_class("busy", timeout=REPLY_WAIT_MS)
    page.wait_for_function(
        f"""() => Number(document.querySelector("#network-stats dd")?.textContent
                          .replace(/,/g, "")) > {stored}"""
    )


def shoot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name))


def test_login_errors_are_shown_and_a_new_user_gets_the_chat(page: Page, live_server) -> None:
    page.goto(live_server.url)
    page.get_by_label("Username").fill("nobody")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong username or password")

    page.get_by_label("Password").fill("short")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("alert")).to_contain_text("8")

    register(page, live_server.url, "newcomer")
    expect(page.locator("#user-name")).to_have_text("newcomer")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible()


def test_a_told_fact_is_recalled_in_a_new_conversation_and_can_be_deleted(
    page: Page, live_server
) -> None:
    nim = live_server.nim
    nim.reply = "Nice to meet you! Here is **bold** and a list:\n\n- one\n- two"
    register(page, live_server.url, "alice")

    send(page, "Hello there")
    reply = page.locator(".message.assistant").last
    expect(reply.locator(".markdown strong")).to_have_text("bold")
    expect(reply.locator(".markdown li")).to_have_count(2)
    expect(page.locator("#conversation-list .conversation")).to_have_count(1)

    fact = "My sister Ingrid lives in Reykjavik and keeps bees"
    send(page, fact)
    # Storing a message drives the SORN: its spikes reach the raster in both colours.
    page.wait_for_function(
        f"() => ({COUNT_COLOURS})(['#raster', [{E_BLUE}, {I_ORANGE}]]).every((n) => n > 0)"
    )

    page.get_by_role("button", name="New conversation").click()
    nim.reply = "Ingrid lives in Reykjavik."
    send(page, "Where does my sister Ingrid live?")
    recalled = page.locator(".message.assistant").last.locator(".memory-item", has_text="Reykjavik")
    expect(recalled.first).to_be_visible()
    expect(recalled.first.locator("mark.matched").first).to_be_visible()
    expect(recalled.first).to_contain_text("score")
    prompt = " ".join(str(m.get("content")) for m in nim.requests[-1]["messages"])
    assert fact in prompt, "the recalled fact did not reach the model's prompt"
    assert len(page.locator("#conversation-list .conversation").all()) == 2
    shoot(page, "chat.png")

    episode_id = recalled.first.get_attribute("data-episode-id")
    item = page.locator(f'.message.assistant .memory-item[data-episode-id="{episode_id}"]')
    item.get_by_role("button", name="Delete memory").click()
    item.get_by_role("button", name="Delete memory").click()  # second click confirms
    expect(item).to_contain_text("Memory deleted")
    remaining = page.request.get(f"{live_server.url}/api/memory?q=Reykjavik&limit=50").json()
    assert episode_id not in {str(hit["episode_id"]) for hit in remaining["results"]}

    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
    page.get_by_role("button", name="Where does my sister Ingrid live?").click()
    expect(page.locator(".message.user .text")).to_have_text(["Where does my sister Ingrid live?"])
    expect(page.locator(".message.assistant .markdown")).to_have_text(
        ["Ingrid lives in Reykjavik."]
    )
    # The reply's memory panel is rebuilt from the stored message after the reload.
    after_reload = page.locator(".message.assistant .memory-item", has_text="Reykjavik")
    expect(after_reload.first).to_be_visible()


def test_the_network_view_paints_spikes_rates_and_the_weight_histogram(
    page: Page, live_server
) -> None:
    register(page, live_server.url, "researcher")
    for text in (
        "Last summer I hiked the Haute Route from Chamonix to Zermatt with my friend Lena; we "
        "slept in mountain huts, crossed glaciers at dawn and ate far too much rösti.",
        "My dog Pixel, a scruffy terrier, hides under the piano whenever a thunderstorm rolls "
        "over Basel, and only comes out for cheese.",
        "Which mountains did I hike with Lena, and where does Pixel hide?",
    ):
        send(page, text)
    expect(page.locator("#network-stats")).to_contain_text("Synapses E→E")
    expect(page.locator("#network-stats dd").nth(1)).to_have_text(re.compile(r"^\d[\d,]*$"))
    page.wait_for_function("() => Number(document.querySelector('#raster').dataset.steps) > 0")
    raster_e, raster_i = page.evaluate(COUNT_COLOURS, ["#raster", [E_BLUE, I_ORANGE]])
    rates_e, rates_i = page.evaluate(COUNT_COLOURS, ["#rates", [E_BLUE, I_ORANGE]])
    (bars,) = page.evaluate(COUNT_COLOURS, ["#histogram", [BAR_GREEN]])
    assert raster_e > 0 and raster_i > 0, "the raster shows both populations"
    assert rates_e > 0 and rates_i > 0, "both firing-rate lines are drawn"
    assert bars > 0, "the weight histogram is drawn"
    if SCREENSHOTS:
        page.locator("#network").screenshot(path=str(Path(SCREENSHOTS) / "network.png"))


def test_stop_keeps_the_partial_reply_and_regenerate_writes_a_new_one(
    page: Page, live_server
) -> None:
    nim = live_server.nim
    nim.reply = " ".join(f"word{k}" for k in range(200))
    nim.mode = "drip"
    register(page, live_server.url, "bob")
    composer = page.get_by_label("Message", exact=True)
    composer.fill("Tell me a long story")
    composer.press("Enter")
    reply = page.locator(".message.assistant").last
    expect(reply.locator(".markdown")).to_contain_text("word3")  # streamed, still writing
    expect(reply).to_contain_class("busy")
    page.get_by_role("button", name="Stop").click()
    expect(reply).to_contain_text("Stopped.")
    assert "word199" not in reply.locator(".markdown").inner_text()

    nim.mode = "ok"
    nim.reply = "A short story instead."
    page.get_by_role("button", name="Regenerate").click()
    expect(reply.locator(".markdown")).to_have_text("A short story instead.")
    expect(page.locator(".message.assistant")).to_have_count(1)


def test_a_failed_reply_keeps_the_message_and_retry_succeeds(page: Page, live_server) -> None:
    nim = live_server.nim
    register(page, live_server.url, "carol")
    nim.mode = "401"  # a bad API key: not retried, shown at once
    send(page, "Are you there?")
    reply = page.locator(".message.assistant").last
    expect(reply.get_by_role("alert")).to_be_visible()
    expect(page.locator(".message.user .text")).to_have_text(["Are you there?"])

    nim.mode = "ok"
    nim.reply = "Yes, I am here."
    reply.get_by_role("button", name="Retry").click()
    expect(reply.locator(".markdown")).to_have_text("Yes, I am here.")
    expect(reply.get_by_role("alert")).to_have_count(0)


def test_html_from_the_user_or_the_model_is_shown_as_text(page: Page, live_server) -> None:
    attack = '<script>window.__xss = "script"</script><img src=x onerror="window.__xss = \'img\'">'
    live_server.nim.reply = f"Echo: {attack} and **still markdown**"
    register(page, live_server.url, "mallory")
    send(page, attack)

    expect(page.locator(".message.user .text")).to_have_text(attack)
    reply = page.locator(".message.assistant .markdown")
    expect(reply).to_contain_text("<img src=x onerror=")
    expect(reply.locator("strong")).to_have_text("still markdown")
    page.reload()  # stored XSS: the history renders the same way
    page.locator("#conversation-list .conversation").first.click()
    expect(page.locator(".message.user .text")).to_have_text(attack)
    assert page.locator("#messages script, #messages img").count() == 0
    assert page.evaluate("window.__xss") is None


def test_the_memory_page_searches_exports_deletes_and_imports(
    page: Page, live_server, tmp_path: Path
) -> None:
    register(page, live_server.url, "erin")
    send(page, "My favourite tea is genmaicha")
    page.get_by_role("tab", name="Memory").click()
    results = page.locator("#memory-results .memory-item")
    expect(results.filter(has_text="genmaicha")).to_have_count(1)  # browsing: recent memories

    page.get_by_label("Search memories").fill("which tea do I like")
    page.get_by_label("Search memories").press("Enter")
    found = results.filter(has_text="genmaicha")
    expect(found.locator("mark.matched")).to_have_text(["tea"])

    with page.expect_download() as download:
        page.get_by_role("link", name="Export").click()
    exported = tmp_path / "export.json"
    download.value.save_as(exported)
    assert "genmaicha" in exported.read_text(encoding="utf-8")

    episode_id = found.get_attribute("data-episode-id")
    episode = results.and_(page.locator(f'[data-episode-id="{episode_id}"]'))
    for _ in range(2):  # click, then confirm
        episode.get_by_role("button", name="delete memory").click()
    expect(episode).to_contain_text("Memory deleted")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(results.filter(has_text="genmaicha")).to_have_count(0)

    page.locator("#memory-import").set_input_files(exported)  # a backup read back in:
    expect(page.locator("#memory-status")).to_contain_text("Imported 1 memory;")  # the deleted
    expect(page.locator("#memory-status")).to_contain_text("already here, skipped")  # the rest
    expect(results.filter(has_text="genmaicha")).not_to_have_count(0)


def test_the_page_decodes_spike_frames_as_the_engine_encodes_them(
    page: Page, live_server
) -> None:
    spikes = np.random.default_rng(7).random((9, 375)) < 0.3  # 375 units: a partial last byte
    frame = encode_frame(2**32 - 4, spikes)
    page.goto(live_server.url)
    decoded = page.evaluate(
        """async (bytes) => {
          const { decodeSpikes, firedUnits } = await import("/static/js/spikes.js");
          const frame = decodeSpikes(new Uint8Array(bytes).buffer);
          const steps = Array.from({ length: frame.steps }, (_, s) => firedUnits(frame, s));
          return { firstStep: frame.firstStep, neurons: frame.neurons, steps };
        }""",
        list(frame),
    )
    assert (decoded["firstStep"], decoded["neurons"]) == (2**32 - 4, 375)
    assert decoded["steps"] == [np.flatnonzero(row).tolist() for row in spikes]


def test_on_a_phone_the_panels_become_tabs(page: Page, live_server) -> None:
    page.set_viewport_size({"width": 390, "height": 800})
    register(page, live_server.url, "dave")
    expect(page.get_by_label("Message", exact=True)).to_be_visible()
    expect(page.locator("#raster")).to_be_hidden()
    page.get_by_role("tab", name="Network").click()
    expect(page.locator("#raster")).to_be_visible()
    expect(page.get_by_label("Message", exact=True)).to_be_hidden()
    page.get_by_role("tab", name="Memory").click()
    expect(page.get_by_role("search")).to_be_visible()
