"""The label page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium):
keyboard labelling, undo, reload, and a screenshot that shows the crops drawn in the grid."""

from __future__ import annotations

import csv
import shutil
import time

import cv2
import numpy as np
import pytest

from tests.train.collectdir import CROP_SIZE, make_collect_dir
from train.commands.label import build_app
from train.config import Config
from train.label.server import make_server, serve_in_thread

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="headless browser test: needs Debian's chromium and chromium-driver "
    "(apt-get install -y chromium chromium-driver)",
)


@pytest.fixture
def page(tmp_path, shared):
    """(browser, base URL, folder): a label server on a free loopback port and a fresh Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    folder = tmp_path / "collect"
    make_collect_dir(folder, n=5)
    app, _ = build_app(folder, Config(), exposed=False)
    server = make_server(app, "127.0.0.1", 0)
    serve_in_thread(server)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1000,700",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        opts.add_argument(flag)
    browser = webdriver.Chrome(options=opts, service=Service(DRIVER))
    try:
        yield browser, f"http://127.0.0.1:{server.server_address[1]}/", folder
    finally:
        browser.quit()
        server.shutdown()
        server.server_close()


def wait_for(browser, condition, what: str, timeout: float = 10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = browser.execute_script(condition)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def card_marks(browser) -> dict[str, str]:
    return browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('.card')]"
        ".map((c) => [c.dataset.file, c.dataset.mask]))"
    )


def press(browser, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    for key in keys:
        ActionChains(browser).send_keys(key).perform()


def test_keyboard_labels_survive_undo_and_reload(page):
    browser, url, folder = page
    browser.get(url)
    wait_for(browser, "return document.body.dataset.ready === '1'", "the page to load its crops")
    assert "labelled 0 / left 5" in browser.find_element("id", "progress").text
    press(browser, "132")  # 000000 wear, 000001 not_wear, 000002 incorrect
    press(browser, "u")  # takes back 000002
    wait_for(
        browser, "return document.getElementById('progress').textContent.startsWith('labelled 2 ')", "undo"
    )
    # every key press is a request; wait until the last (the undo) is on disk, then reload
    wait_for(browser, "return document.getElementById('status').textContent === ''", "saves")
    browser.refresh()
    wait_for(browser, "return document.body.dataset.ready === '1'", "the reloaded page")
    marks = card_marks(browser)
    assert marks == {
        "000000.jpg": "wear",
        "000001.jpg": "not_wear",
        "000002.jpg": "",
        "000003.jpg": "",
        "000004.jpg": "",
    }
    assert "labelled 2 / left 3" in browser.find_element("id", "progress").text
    with open(folder / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["file"], r["mask"]) for r in rows] == [("000000.jpg", "wear"), ("000001.jpg", "not_wear")]
    # after the reload the cursor is on the first unlabelled crop: g and a label it there
    press(browser, "gga")
    wait_for(
        browser, "return document.querySelector('.card.current .label').textContent.includes('<30')", "a"
    )
    wait_for(browser, "return document.getElementById('status').textContent === ''", "saves")
    time.sleep(0.3)
    with open(folder / "labels.csv", newline="") as fh:
        rows = {r["file"]: r for r in csv.DictReader(fh)}
    assert rows["000002.jpg"] == {"file": "000002.jpg", "mask": "", "gender": "female", "age": "<30"}


def test_unsure_filter_and_the_screenshot_shows_the_crops(page):
    browser, url, folder = page
    browser.get(url)
    wait_for(browser, "return document.body.dataset.ready === '1'", "the page to load its crops")
    wait_for(
        browser, "return [...document.images].every((i) => i.complete && i.naturalWidth > 0)", "the crops"
    )
    shot = cv2.imdecode(np.frombuffer(browser.get_screenshot_as_png(), np.uint8), cv2.IMREAD_COLOR)
    rects = browser.execute_script(
        "return [...document.querySelectorAll('.card img')].map((i) => {const r = i.getBoundingClientRect();"
        " return [i.alt, Math.round(r.left), Math.round(r.top), Math.round(r.width), Math.round(r.height)]})"
    )
    assert len(rects) == 5
    for name, x, y, w, h in rects:
        drawn = shot[y : y + h, x : x + w].astype(np.float32)
        truth = cv2.resize(cv2.imread(str(folder / name)), (w, h), interpolation=cv2.INTER_LINEAR)
        # the crop itself is drawn there: close to the file's pixels, and not the page's flat background
        assert drawn.shape[:2] == (h, w) and (w, h) == (CROP_SIZE[0] * 5 // 4, CROP_SIZE[1] * 5 // 4)
        assert np.abs(drawn - truth).mean() < 20, name
        assert drawn.std() > 20, name
    # cards sit side by side in a grid: at least two share a row
    assert len({y for *_, y, _w, _h in rects}) < len(rects)
    press(browser, "f")
    wait_for(browser, "return document.querySelectorAll('.card').length === 2", "the 'model unsure' filter")
    assert sorted(card_marks(browser)) == ["000001.jpg", "000003.jpg"]
    assert "showing 2 unsure" in browser.find_element("id", "progress").text
