"""The studio in a real browser: Debian's headless Chromium, driven by Selenium through its own ChromeDriver.

Opens the page, filters, plays a melody (the audio element loads and reports a duration), rates and
approves with the keyboard, reloads and sees the rating kept, exports, and checks that text from
the manifest is shown as text, never run as markup.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pyarrow.parquet as pq
import pytest
import uvicorn

from musicgen.music.export import wav_available
from musicgen.studio import default_database
from musicgen.studio.app import create_app
from musicgen.studio.catalog import Catalog
from musicgen.studio.store import ReviewStore
from tests.unit.test_studio import write_catalog

pytestmark = pytest.mark.integration
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def studio(tmp_path, monkeypatch):
    monkeypatch.delenv("MUSICGEN_API_TOKEN", raising=False)
    folder = tmp_path / "catalog"
    write_catalog(folder)
    table = pq.read_table(folder / "manifest.parquet").to_pylist()
    table[0]["key"] = "<b id=injected>D minor</b>"  # a hostile manifest value
    import pyarrow as pa

    pq.write_table(pa.Table.from_pylist(table), folder / "manifest.parquet")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(Catalog(str(folder)), ReviewStore(default_database(str(folder))))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", folder
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail("chromium and chromedriver are needed (make setup installs them: infra/install-browser.sh)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required", f"--user-data-dir={tmp_path / 'chromium'}",
                 "--window-size=1400,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float = 20.0, what: str = "the page"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # noqa: BLE001 - the element may not be there yet
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _rows(browser):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, "#rows tr")


def test_an_editor_filters_listens_rates_reloads_and_exports(studio, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url, folder = studio
    browser.get(url)
    _wait(lambda: len(_rows(browser)) == 12, what="12 rows")
    # manifest text is shown as text: the hostile key is visible literally and made no element
    assert not browser.find_elements(By.ID, "injected")
    assert "<b id=injected>" in browser.find_element(By.ID, "rows").text

    Select(browser.find_element(By.ID, "f-style")).select_by_visible_text("bach_chorale")
    _wait(lambda: len(_rows(browser)) == 6 and all("bach_chorale" in r.text for r in _rows(browser)), what="filter")
    _rows(browser)[0].click()
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#notation svg"), what="notation")
    if wav_available():
        duration = _wait(lambda: browser.execute_script(
            "const p = document.getElementById('player'); return p.readyState >= 1 && p.duration > 0 && p.duration;"),
            timeout=60, what="the audio to load")
        assert duration > 1.0
    _wait(lambda: browser.execute_script("return document.getElementById('pianoroll').naturalWidth") > 100,
          what="the piano roll")
    chosen = _rows(browser)[0].get_attribute("data-id")

    body = browser.find_element(By.TAG_NAME, "body")
    body.send_keys("4")
    _wait(lambda: "version 1" in browser.find_element(By.ID, "version").text, what="the rating to save")
    body.send_keys("a")
    _wait(lambda: "approved" in browser.find_element(By.ID, "decision").text, what="the approval to save")
    if os.environ.get("MUSICGEN_STUDIO_SCREENSHOT"):  # docs/studio.md's picture
        browser.save_screenshot(os.environ["MUSICGEN_STUDIO_SCREENSHOT"])

    browser.refresh()
    _wait(lambda: len(_rows(browser)) == 12, what="the reloaded list")
    row = next(r for r in _rows(browser) if r.get_attribute("data-id") == chosen)
    assert "★★★★" in row.text and "approve" in row.text

    browser.find_element(By.ID, "export").click()
    _wait(lambda: "exported 1 approved" in browser.find_element(By.ID, "message").text, what="the export")
    exported = pq.read_table(folder / "exports" / "approved" / "manifest.parquet").to_pylist()
    assert [(r["id"], r["rating"], r["decision"]) for r in exported] == [(chosen, 4, "approve")]
