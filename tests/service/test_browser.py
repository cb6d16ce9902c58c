"""The review page in a real browser: Playwright driving the system's Chromium (Debian's `chromium`)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import images_of

playwright = pytest.importorskip("playwright.sync_api", reason="the test extra installs playwright")

# Playwright cannot download its own browser here; CI installs Debian's (.ci/run)
CHROMIUM = os.environ.get("PATCHCORE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
SCREENSHOT = os.environ.get("PATCHCORE_SCREENSHOT")  # set to plots/readme/serve_page.png to remake the README's picture


def _until(page, expression: str, timeout: float = 30) -> None:
    """Poll ``expression`` from here: page.wait_for_function evaluates strings, which the page's CSP forbids."""
    end = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < end, f"never true: {expression}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("no chromium found: install it (apt-get install chromium) or set PATCHCORE_CHROMIUM to its path")
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_upload_see_the_verdict_and_heatmap_and_review(browser, server, served_project, tmp_path):
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    outside: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(server.url) or r.url.startswith("blob:") else outside.append(r.url),
    )
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server.url + "/")
    page.wait_for_selector("#model:has-text('hazelnut_toy')")
    image = images_of(served_project)[0]  # a defective one (test/colour)
    page.set_input_files("#file", str(image))
    page.wait_for_selector("#verdict:has-text('anomalous')", timeout=60_000)
    _until(page, "document.getElementById('heatmap').complete && document.getElementById('heatmap').naturalWidth > 0")
    assert page.inner_text("#r-name") == image.name
    shown = float(page.inner_text("#score"))
    newest = server.json("GET", "/v1/inspections?limit=1")[1]["inspections"][0]
    assert newest["image"] == image.name and abs(newest["score"] - shown) < 1e-4
    width = page.evaluate("document.getElementById('heatmap').naturalWidth")
    assert (
        width == server.json("GET", "/v1/model")[1]["input_size"]
    )  # the overlay PNG (the network's view), decoded by the browser
    _regions_drawn_where_they_are(page, newest)
    page.click("#mark-good")
    page.wait_for_selector("#review:has-text('good')")
    assert server.json("GET", f"/v1/inspections/{newest['id']}")[1]["review"] == "good"
    assert page.locator(f"tr[data-id='{newest['id']}'] td.review").inner_text() == "good"
    page.select_option("#filter", "anomalous")
    _until(
        page, "[...document.querySelectorAll('#rows tr td:nth-child(4)')].every(td => td.textContent === 'anomalous')"
    )
    shot = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    assert not outside, f"the page reached outside the service: {outside}"
    assert not errors, errors
    page.close()


BOX = """[...document.querySelectorAll('#boxes .region')].map(b => {
  const r = b.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })"""
PICTURE = "(() => { const r = document.getElementById('heatmap').getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; })()"


def _regions_drawn_where_they_are(page, inspection: dict) -> None:
    """Each region's box over the heatmap where the region lies (the record's pixels through heatmap_window), at the
    fitted size and at full resolution, where the picture is shown at its own pixels."""
    x0, y0, x1, y1 = inspection["heatmap_window"]
    regions = inspection["regions"]
    assert regions, "the defective image has regions"
    for zoomed in (False, True):
        if zoomed:
            page.click("#zoom")
            _until(
                page,
                "document.getElementById('heatmap').getBoundingClientRect().width === "
                "document.getElementById('heatmap').naturalWidth",
            )
        left, top, width, height = page.evaluate(PICTURE)
        boxes = page.evaluate(BOX)
        assert len(boxes) == len(regions)
        for box, r in zip(boxes, regions):
            expected = (
                left + (r["x"] - x0) / (x1 - x0) * width,
                top + (r["y"] - y0) / (y1 - y0) * height,
                r["width"] / (x1 - x0) * width,
                r["height"] / (y1 - y0) * height,
            )
            assert all(abs(a - b) <= 1.0 for a, b in zip(box, expected)), (box, expected)
    page.click("#zoom")


def test_a_bad_file_shows_the_services_message(browser, server, tmp_path):
    page = browser.new_page()
    page.goto(server.url + "/")
    notes = tmp_path / "notes.png"
    notes.write_text("not really a png\n")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("#status.error:has-text('not a PNG, JPEG')")
    page.close()
