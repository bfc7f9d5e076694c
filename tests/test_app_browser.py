"""End to end in a real browser (Debian chromium via Playwright): playground, a tiny audit, the CSV download.

Screenshots of both tabs go to ``$FACEDRIFT_SCREENSHOTS`` when set (``docs/screenshots`` refreshes the README's
images), to the test's temporary folder otherwise.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ui.common import EXAMPLES_DIR

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser_app(app_server):
    """A headless chromium page on the shared app server; yields the page."""
    if not Path(CHROMIUM).is_file() or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must install Debian's chromium (.ci/run does)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); required when CI is set")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page.set_default_timeout(120_000)
        page.goto(app_server[0])
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("FACEDRIFT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_playground_then_audit_then_csv_download(browser_app, shots, tmp_path):
    page = browser_app
    # Playground: upload the astronaut photo, run the default Gaussian blur on the face crop.
    page.get_by_role("button", name="Run", exact=True).wait_for()
    page.locator("input[type=file]").first.set_input_files(str(EXAMPLES_DIR / "astronaut.png"))
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Closest to the original's identity").wait_for()
    sliders = page.get_by_text("AI reconstruction — may invent detail", exact=False)
    assert sliders.count() >= 2
    assert page.get_by_role("gridcell", name="Wiener deconvolution (known kernel)").count() >= 1
    page.wait_for_timeout(500)  # let the slider images paint
    page.screenshot(path=str(shots / "playground.png"), full_page=True)

    # Audit: 3 built-in faces, Wiener vs none at one strength.
    page.get_by_role("tab", name="Audit").click()
    page.get_by_label("wiener", exact=True).check()
    page.get_by_label("none", exact=True).check()
    page.get_by_label("Strengths (px of the 128-px crop)").fill("gaussian=4")
    size = page.get_by_label("number input for Sample size (faces)")
    size.fill("3")
    size.press("Enter")
    page.get_by_role("button", name="Run audit", exact=True).click()
    page.get_by_text("Audited 3 faces").wait_for()
    page.get_by_role("button", name="Download group report (CSV)").wait_for()
    page.wait_for_timeout(1000)  # plotly draws after the data arrives
    # settings, table, downloads and the first figures; the full page is several screens of plots
    page.screenshot(path=str(shots / "audit.png"), full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": 2200})

    with page.expect_download() as info:
        page.get_by_role("button", name="Download group report (CSV)").click()
    saved = tmp_path / "groups.csv"
    info.value.save_as(saved)
    groups = pd.read_csv(saved)
    assert set(groups["model"]) == {"wiener", "none"}
    assert set(groups["strength"]) == {4.0} and (groups["n"] <= 3).all()
    assert (shots / "playground.png").stat().st_size > 10_000 and (shots / "audit.png").stat().st_size > 10_000
