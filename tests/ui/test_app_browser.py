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


# Layout measured in the page (the list of what a new user tripped over), in CSS pixels.
CAPTIONS_CLEAR = """() => [...document.querySelectorAll('.facedrift-recon')].filter(b => b.offsetParent).map(b => {
  const label = b.querySelector('[data-testid="block-label"]').getBoundingClientRect();
  const img = b.querySelector('img').getBoundingClientRect();
  return label.bottom - img.top; })"""
PANEL_WIDTHS = """() => [...document.querySelectorAll('.facedrift-panel img')]
  .map(i => i.getBoundingClientRect().width)"""
# Per visible table: [rows cut off at the bottom (px), header cells whose words do not fit on a line, headers]
TABLES = """() => [...document.querySelectorAll('.table-container')].filter(t => t.offsetParent).map(t => {
  const viewport = t.querySelector('.virtual-table-viewport') || t;
  const cut = viewport.scrollHeight - viewport.clientHeight;
  const heads = [...t.querySelectorAll('thead th')];
  const broken = heads.filter(th => { const span = th.querySelector('span.header');
    const words = span.textContent.trim().split(/\\s+/).length;
    const line = parseFloat(getComputedStyle(span).lineHeight) || 20;
    return span.getBoundingClientRect().height > (words + 0.5) * line; }).map(th => th.textContent.trim());
  return [cut, broken, heads.map(th => th.textContent.trim())]; })"""


def check_layout(page, what: str, every_row: bool = True) -> None:
    """No caption over an image, no table with headers wrapped inside a word or (``every_row``) rows cut off.

    The audit's group table may scroll (dozens of rows); the playground's and the safety tab's show every row.
    """
    assert all(overlap <= 1 for overlap in page.evaluate(CAPTIONS_CLEAR)), f"{what}: a caption covers its image"
    for cut, broken, heads in page.evaluate(TABLES):
        assert cut <= 2 or not every_row, f"{what}: table {heads[:3]} cuts {cut} px of rows"
        assert not broken, f"{what}: headers wrapped inside a word: {broken}"
        assert heads[:3] != ["1", "2", "3"], f"{what}: a table without headers"


def test_playground_then_audit_then_csv_download(browser_app, shots, tmp_path):
    page = browser_app
    # Playground: upload the astronaut photo, run the default Gaussian blur on the face crop.
    page.get_by_role("button", name="Run", exact=True).wait_for()
    check_layout(page, "playground before a run")
    page.locator("input[type=file]").first.set_input_files(str(EXAMPLES_DIR / "astronaut.png"))
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text("Closest to the original's identity").wait_for()
    page.locator(".facedrift-recon img").nth(1).wait_for()
    sliders = page.get_by_text("AI reconstruction — may invent detail", exact=False)
    assert sliders.count() >= 2
    assert page.get_by_role("gridcell", name="Wiener deconvolution (known kernel)").count() >= 1
    page.wait_for_timeout(500)  # let the slider images paint
    check_layout(page, "playground")
    assert min(page.evaluate(PANEL_WIDTHS)) >= 250, "the 128-px crops must fill their panels like the sliders"
    assert page.get_by_text("different person as the original").count() == 0
    page.screenshot(path=str(shots / "playground.png"), full_page=True)
    # Run again with another degradation: the upload was deleted from disk after the first run; the tab's
    # memory of the photo serves the second.
    page.get_by_label("Pixelation", exact=True).check()
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("gridcell", name="Bicubic", exact=False).first.wait_for()
    assert page.get_by_text("no longer on the server").count() == 0

    # Audit: restorers by label, only those for the ticked degradation; 3 built-in faces, Wiener vs none.
    page.get_by_role("tab", name="Audit").click()
    check_layout(page, "audit before a run")
    assert page.get_by_label("wiener", exact=True).count() == 0  # internal keys are not shown
    assert page.get_by_label("Bicubic", exact=False).count() == 0  # pixelation only; Gaussian is ticked
    page.get_by_label("Wiener deconvolution (known kernel)", exact=True).check()
    page.get_by_label("No restoration (degraded input)", exact=True).check()
    page.get_by_label("Strengths (px of the 128-px crop)").fill("gaussian=4")
    size = page.get_by_label("number input for Sample size (faces)")
    size.fill("3")
    size.press("Enter")
    page.get_by_role("button", name="Run audit", exact=True).click()
    page.get_by_text("Audited 3 faces").wait_for()
    page.get_by_role("button", name="Download group report (CSV)").wait_for()
    page.wait_for_timeout(1000)  # plotly draws after the data arrives
    check_layout(page, "audit", every_row=False)
    listed = page.locator(".file-preview").get_by_text("faces", exact=True)  # the list shows "faces" + ".csv"
    assert listed.count() >= 1  # faces.csv (predicted attributes per face) is offered with the other report files
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


def test_safety_tab_and_about_tab_read_cleanly(browser_app, shots):
    page = browser_app
    page.get_by_role("tab", name="Is this blur safe?").click()
    check_layout(page, "safety before a run")
    page.locator("[role=tabpanel]:visible input[type=file]").first.set_input_files(str(EXAMPLES_DIR / "astronaut.png"))
    page.get_by_role("button", name="Run the sweep (about 30 s)", exact=True).click()
    page.get_by_text("Safe against", exact=False).or_(page.get_by_text("No tested strength is safe")).first.wait_for()
    page.wait_for_timeout(1000)
    check_layout(page, "safety")
    notes = page.locator("[data-testid=markdown]").filter(has_text="not a guarantee")  # the note, not figure titles
    assert notes.count() == 1, "the lower-bound note, once"
    tab = page.locator("[role=tabpanel]:visible")
    assert tab.get_by_text("Whole image", exact=False).count() == 0  # this tab has no such mode
    # Anonymise the same photo (the upload was consumed by the sweep: the tab's memory has it)
    page.get_by_role("button", name="Anonymise every face", exact=True).click()
    page.get_by_text("Independent check", exact=False).wait_for()
    page.wait_for_timeout(1000)
    check_layout(page, "safety after anonymising")
    assert tab.get_by_text("0 re-identified", exact=False).count() == 1
    shown = page.evaluate("""() => [...document.querySelectorAll('[role=tabpanel] img')].filter(i => i.offsetParent
      && (i.closest('.block')?.innerText || '').startsWith('Anonymised photo')).map(i => i.naturalWidth)""")
    assert shown == [512], shown  # the whole anonymised photo is shown, not a crop
    rows = page.evaluate("""() => [...document.querySelectorAll('.table-container')].filter(t => t.offsetParent)
      .map(t => t.querySelectorAll('tbody tr').length)""")
    assert rows[-1] == 1, rows  # one row per face in the per-face table
    page.screenshot(path=str(shots / "safety.png"), full_page=True)
    page.get_by_role("tab", name="About").click()
    page.get_by_text("Privacy of this app").wait_for()
    assert page.get_by_text("Model card: Model card", exact=False).count() == 0
    assert page.get_by_text("Model card: resunet-gaussian", exact=False).count() == 1
    page.screenshot(path=str(shots / "about.png"), full_page=True)
