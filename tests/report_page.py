"""Reading the HTML report (`evaluate --report`) back: its sections, tables, pictures and worst
cases as a parser sees them, and the checks that its numbers are `--json`'s and that it is one
self-contained file. Shared by tests/test_report.py and tests/test_report_browser.py."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.evaluate import html_sections

# Decimals per metric, as the text tables print them (evaluate.report).
DIGITS = {"dice": 3, "iou": 3, "nsd": 3, "cldice": 3, "hd95": 1, "hd95_pct": 2, "assd": 1, "assd_pct": 2}
OVERLAP = ("dice", "iou", "nsd", "cldice")
DISTANCES = ("hd95", "hd95_pct", "assd", "assd_pct")
COLUMNS = dict(zip(recipe.CLASSES, recipe.MASK_COLUMNS))


class Page(HTMLParser):
    """What a report holds, parsed: tables by id (head and rows of cell texts), images, the
    worst cases' figures, each section's text, and anything that would reach outside the file."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, dict[str, list]] = {}
        self.images: list[dict[str, str]] = []
        self.cases: list[dict[str, str]] = []
        self.sections: dict[str, str] = {}
        self.tags: set[str] = set()
        self.references: list[str] = []
        self._table: dict[str, list] | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._head = False
        self._section: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = {name: value or "" for name, value in attrs}
        self.tags.add(tag)
        self.references += [attributes[name] for name in ("src", "href") if name in attributes]
        if tag == "section":
            self._section = attributes.get("id")
            self.sections[self._section] = ""
        elif tag == "table":
            self._table = self.tables.setdefault(attributes["id"], {"head": [], "rows": []})
        elif tag == "thead":
            self._head = True
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(attributes)
        elif tag == "figure":
            self.cases.append(attributes)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._head:
                self._table["head"] = self._row
            else:
                self._table["rows"].append(self._row)
            self._row = None
        elif tag == "thead":
            self._head = False
        elif tag == "table":
            self._table = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._section is not None:
            self.sections[self._section] += data

    def rows(self, ident: str) -> dict[str, list[str]]:
        """A table's rows by their first cell."""
        return {row[0]: row for row in self.tables[ident]["rows"]}


def interval(metric: str, mean, ci95, *, name: str = "") -> str:
    if metric == "cldice" and name and name not in evaluate.TUBULAR_CLASSES:
        return "n/a"
    if mean is None:
        return "–"
    digits = DIGITS[metric]
    return f"{mean:.{digits}f} [{ci95[0]:.{digits}f}, {ci95[1]:.{digits}f}]"


def value(metric: str, number) -> str:
    return "–" if number is None else f"{number:.{DIGITS[metric]}f}"


def assert_page_matches_json(page: Page, result: dict) -> None:
    """Every number on the page is the result's, rounded as the text tables round."""
    overlap, distances = page.rows("overlap"), page.rows("distances")
    assert list(overlap) == list(result["classes"]) == list(distances)
    for name, entry in result["classes"].items():
        row = overlap[name]
        assert row[1:3] == [result["tiers"][name], str(entry["n"])]
        assert row[3:] == [interval(m, entry[m]["mean"], entry[m]["ci95"], name=name) for m in OVERLAP]
        row = distances[name]
        assert row[2:] == [
            str(entry["hd95"]["n"]),
            *(interval(m, entry[m]["mean"], entry[m]["ci95"]) for m in DISTANCES),
        ]
    if result["split"] == "cv" and result["fold"] is None:
        folds = page.rows("folds")
        for name, entry in result["classes"].items():
            expected = [
                "–" if dice is None else f"{dice:.3f} / {nsd:.3f}"
                for dice, nsd in zip(entry["dice"]["folds"], entry["nsd"]["folds"])
            ]
            assert folds[name][1:] == expected
    summary = result["summary"]
    if summary is not None:
        text = " ".join(page.sections["headline"].split())
        assert f"Dice {interval('dice', summary['dice']['mean'], summary['dice']['ci95'])}" in text
        assert f"NSD {interval('nsd', summary['nsd']['mean'], summary['nsd']['ci95'])}" in text
    for name in result["classes"]:
        pairs = page.rows(f"pairs-{COLUMNS[name]}")
        assert len(pairs) == len(result["images"])
        for image in result["images"]:
            row, pair = pairs[str(image["image_id"])], image["classes"][name]
            assert row[3:5] == [image["split"], "–" if image["fold"] is None else str(image["fold"])]
            if "skipped" in pair:
                assert row[5] == f"skipped: {html_sections.SKIP_TEXT[pair['skipped']]}"
            else:
                metrics = [m for m in evaluate.METRICS if m != "cldice" or name in evaluate.TUBULAR_CLASSES]
                order = ["dice", "iou", "nsd", "cldice", "hd95", "hd95_pct", "assd", "assd_pct"]
                assert row[5:] == [value(m, pair[m]) for m in order if m in metrics]


def assert_self_contained(page: Page, text: str) -> None:
    """No script, no stylesheet or font to fetch, every picture inline and decodable."""
    assert not page.tags & {"script", "link", "iframe", "object", "embed"}
    assert "@import" not in text and "url(" not in text
    assert all(reference.startswith(("data:image/png;base64,", "#")) for reference in page.references)
    for image in page.images:
        data = base64.b64decode(image["src"].split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(data)) as picture:
            picture.load()
            assert picture.width > 0 and picture.height > 0
            assert max(picture.size) <= 256 or image.get("class") == "plot"
