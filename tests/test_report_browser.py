"""The HTML report in a real browser: Debian's headless Chromium (covid_chestxray_seg_dev.browser)
loads it with no failed request and no console error, decodes every picture, and shows more
than a blank page. The driver's own checks first (a broken page is caught), then the fixture's
report, then the atlas's cross-validation report on the full data (slow).

Where Chromium is not installed these tests skip, except where COVID_SEG_REQUIRE_BROWSER=1
(CI installs it and sets that): there a missing browser fails."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

import covid_chestxray_seg as recipe
from covid_chestxray_seg_dev import browser
from covid_chestxray_seg_tools.cli import main as covid_seg
from tests.helpers import shifted, write_truth_folder
from tests.report_page import Page, assert_page_matches_json, assert_self_contained

# Each test starts Chromium: slow, like the other tests in processes of their own. The page's
# content is tested without a browser in tests/test_report.py, which the fast loop runs.
pytestmark = pytest.mark.slow

REQUIRE_VARIABLE = "COVID_SEG_REQUIRE_BROWSER"
# A page with text, tables and pictures has hundreds of colours; a blank or broken one a few.
MIN_COLOURS = 16
# A PNG cut short inside its header: no request fails and nothing is logged; only its
# naturalWidth (0) tells. (Cut after the header, Chromium shows the pixels it has: width 1.)
_TRUNCATED_PNG = "iVBORw0KGgoAAAANSUhEUgAAAA=="


def require_browser() -> str:
    """Chromium, or a skip where it is not installed; where COVID_SEG_REQUIRE_BROWSER=1 (CI,
    which installs it) a missing one fails instead."""
    found = browser.find_chromium()
    if found is not None and os.access(found, os.X_OK):
        return found
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_VARIABLE}=1 but no chromium is installed (apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium; CI installs it)")


def leftovers() -> list[str]:
    """Processes started with one of the driver's profiles, and profiles left behind."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"covid-seg-chromium-" in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(entry)
        except OSError:
            pass
    return found + [path.name for path in Path(tempfile.gettempdir()).glob("covid-seg-chromium-*")]


def assert_loads_cleanly(page: Path) -> browser.PageLoad:
    load = browser.open_page(page, full_page=True)
    assert load.failed_requests == []
    assert load.console_errors == []
    assert load.images and load.images_ok, [image for image in load.images if not image.ok]
    assert browser.colour_count(load.screenshot, limit=MIN_COLOURS) > MIN_COLOURS, "a blank page"
    return load


def test_the_driver_catches_failed_requests_console_errors_and_broken_pictures(tmp_path):
    require_browser()
    page = tmp_path / "bad.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p>broken</p>"
        '<img src="http://127.0.0.1:59999/y.png"><img src="missing.png">'
        f'<img src="data:image/png;base64,{_TRUNCATED_PNG}">'
        "<script>console.error('deliberate console error'); throw new Error('deliberate uncaught');</script>"
        "</body></html>",
        encoding="utf-8",
    )
    load = browser.open_page(page)
    assert {error for _, error in load.failed_requests} == {"net::ERR_NAME_NOT_RESOLVED", "net::ERR_FILE_NOT_FOUND"}
    assert any("deliberate console error" in error for error in load.console_errors)
    assert any("deliberate uncaught" in error for error in load.console_errors)
    assert [image.ok for image in load.images] == [False, False, False]
    assert load.text.strip() == "broken"
    assert leftovers() == []


def test_a_blank_page_is_one_colour(tmp_path):
    require_browser()
    page = tmp_path / "blank.html"
    page.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    load = browser.open_page(page, width=400, height=300)
    assert browser.colour_count(load.screenshot) == 1
    assert load.images == [] and load.failed_requests == [] and load.console_errors == []


def test_a_hung_browser_is_stopped_at_the_deadline(tmp_path):
    require_browser()
    page = tmp_path / "page.html"
    page.write_text("<p>x</p>", encoding="utf-8")
    with pytest.raises(browser.BrowserError, match="did not answer in time"):
        browser.open_page(page, timeout=0.05)
    assert leftovers() == []


def test_the_fixture_report_loads_cleanly_with_its_comparison(fixture_build, tmp_path):
    require_browser()
    truth = write_truth_folder(fixture_build, tmp_path / "truth", ["train", "validation"])
    moved = write_truth_folder(
        fixture_build,
        tmp_path / "moved",
        ["train", "validation"],
        change=lambda image_id, column, mask: shifted(mask, 9, -6) if column == "mask_left_lung" else mask,
    )
    page = tmp_path / "report.html"
    args = ["evaluate", "--source", str(fixture_build), "--split", "cv", "--predictions", str(truth)]
    assert covid_seg([*args, "--compare", str(moved), "--classes", *recipe.CLASSES, "--report", str(page)]) == 0
    load = assert_loads_cleanly(page)
    assert len(load.images) == len(Page(page.read_text(encoding="utf-8")).images)
    assert "Where A and B differ most" in load.text and "Headline" in load.text
    assert {"scored", "headline", "classes", "worst", "comparison", "pairs"} <= set(load.sections)
    assert leftovers() == []


def test_the_atlas_cv_report_on_the_full_data(real_atlas_cv):
    page, scores = real_atlas_cv / "report.html", real_atlas_cv / "scores.json"
    text = page.read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 10 * 2**20
    parsed, result = Page(text), json.loads(scores.read_text())
    assert_page_matches_json(parsed, result)
    assert_self_contained(parsed, text)
    severity = parsed.rows("severity")
    for column, entry in result["severity"].items():
        low, high = entry["interval"]
        expected = [str(entry["n"]), f"{entry['predicted']:.2f} [{low:.2f}, {high:.2f}]", f"{entry['truth']:.2f}"]
        assert severity[column][1:] == expected
    # Each class's three worst cases (fewer where fewer pairs are scored); the small classes named.
    per_class = {name: sum(case["data-class"] == name for case in parsed.cases) for name in result["classes"]}
    assert per_class == {name: min(3, entry["n"]) for name, entry in result["classes"].items()}
    small = [name for name, entry in result["classes"].items() if entry["n"] < 5]
    assert small and f"in the tables only: {', '.join(small)}." in " ".join(parsed.sections["distributions"].split())
    # In the browser: every picture decoded, nothing failed, more than a blank page.
    require_browser()
    load = assert_loads_cleanly(page)
    assert len(load.images) == len(parsed.images) == sum(per_class.values()) + 1  # and the distributions
