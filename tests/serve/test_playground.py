"""The playground page in headless Chromium: typing shows ghost text with its latency; Tab accepts."""

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.mark.slow
def test_typing_shows_ghost_text_and_tab_accepts(server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium) to run this test")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            page.fill("#max-tokens", "6")
            page.click("#editor")
            page.keyboard.type("def add(a, b):\n    return ", delay=20)
            page.wait_for_selector("#ghost", timeout=20_000)  # the page draws #ghost only for a non-empty one
            ghost = page.text_content("#ghost")  # exact text: inner_text would trim spaces the model wrote
            assert ghost
            assert page.inner_text("#latency").endswith("ms")
            artifacts = Path(os.environ.get("LIGHTCODER_TEST_ARTIFACTS", tmp_path))
            artifacts.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(artifacts / "playground.png"))
            before = page.input_value("#editor")
            page.keyboard.press("Tab")
            assert page.input_value("#editor") == before + ghost
            assert page.eval_on_selector("#editor", "e => e.selectionStart") == len(before + ghost)
        finally:
            browser.close()
