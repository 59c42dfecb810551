"""The HTML report (`evaluate --report`): its numbers are `--json`'s, it is one self-contained
file, its pictures decode, its worst cases are real failures, its colours survive colour
blindness, and a file that cannot be written is one clear error. In a real browser:
test_report_browser.py. The fixture build first, then the full data (slow)."""

from __future__ import annotations

import io
import itertools
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import evaluate
from covid_chestxray_seg_tools.card.colours import ciede2000, srgb_to_lab
from covid_chestxray_seg_tools.cli import main as covid_seg
from covid_chestxray_seg_tools.evaluate import figures, markdown_html, worst_cases
from tests.helpers import shifted, write_truth_folder
from tests.report_page import (
    COLUMNS,
    Page,
    assert_page_matches_json,
    assert_self_contained,
)


@pytest.fixture(scope="module")
def development_truth(fixture_build, tmp_path_factory) -> Path:
    return write_truth_folder(fixture_build, tmp_path_factory.mktemp("report") / "truth", ["train", "validation"])


def run_report(tmp_path: Path, *options: str) -> tuple[Page, str, dict]:
    page_path, json_path = tmp_path / "report.html", tmp_path / "scores.json"
    assert covid_seg(["evaluate", *options, "--report", str(page_path), "--json", str(json_path), "--quiet"]) == 0
    text = page_path.read_text(encoding="utf-8")
    return Page(text), text, json.loads(json_path.read_text())


def test_the_truth_as_predictions_gives_1_everywhere_on_the_page(fixture_build, development_truth, tmp_path, capsys):
    source = ["--source", str(fixture_build), "--predictions", str(development_truth), "--split", "cv"]
    page, text, result = run_report(tmp_path, *source, "--classes", *recipe.CLASSES)
    assert f"wrote {tmp_path / 'report.html'} (" in capsys.readouterr().out
    assert_page_matches_json(page, result)
    assert_self_contained(page, text)
    scored = [row for name in result["classes"] for row in page.tables[f"pairs-{COLUMNS[name]}"]["rows"]]
    assert {row[5] for row in scored if not row[5].startswith("skipped")} == {"1.000"}
    assert "Dice 1.000 [1.000, 1.000], NSD 1.000 [1.000, 1.000]" in " ".join(page.sections["headline"].split())
    assert all(row[3] == "1.000 [1.000, 1.000]" for row in page.tables["overlap"]["rows"] if row[3] != "–")
    # What was scored: the source, the scope, the tiers, the conventions, who computed what.
    scored_text = " ".join(page.sections["scored"].split())
    assert str(fixture_build) in scored_text and "cross-validation (5 folds" in scored_text
    assert "2 of 2 patients" in scored_text and "bootstrap over patients, 2000 resamples, seed 0" in scored_text
    versions = {row[0]: row[2] for row in page.tables["implementations"]["rows"]}
    assert re.search(r"scikit-image \d", versions["clDice"]) and re.search(r"scipy \d", versions["Severity agreement"])
    assert [row[:2] for row in page.tables["tiers"]["rows"]] == [
        [name, recipe.CLASS_TIERS[name]] for name in recipe.CLASSES
    ]
    # Worst cases: only scored pairs (both images for the five classes with masks), each a thumbnail.
    cases = {(case["data-class"], int(case["data-image"])) for case in page.cases}
    assert cases == {
        (name, image["image_id"])
        for image in result["images"]
        for name in result["classes"]
        if "dice" in image["classes"][name]
    }
    # Two images: too few for a distribution, every class in the tables only.
    assert len(page.images) == len(cases)
    assert f"in the tables only: {', '.join(recipe.CLASSES)}." in " ".join(page.sections["distributions"].split())


def test_one_fold_gives_the_severity_agreement_with_its_n_and_interval_only(fixture_build, development_truth, tmp_path):
    source = ["--source", str(fixture_build), "--predictions", str(development_truth), "--fold", "0"]
    page, text, result = run_report(tmp_path, *source)
    assert (result["split"], result["fold"]) == ("cv", 0) and "folds" not in page.tables
    assert_page_matches_json(page, result)
    assert_self_contained(page, text)
    assert page.tables["severity"]["head"] == ["score", "n", "95 % interval of rho (predicted)"]
    assert page.rows("severity") == {
        column: [column, str(entry["n"]), "–"] for column, entry in result["severity"].items()
    }
    assert "n is small here: on cross-validation fold 0 only the number of images" in " ".join(
        page.sections["severity"].split()
    )


def test_a_comparison_draws_the_forest_plot_and_where_a_and_b_differ(fixture_build, development_truth, tmp_path):
    moved = write_truth_folder(
        fixture_build,
        tmp_path / "moved",
        ["train", "validation"],
        change=lambda image_id, column, mask: shifted(mask, 9, -6) if column == "mask_left_lung" else mask,
    )
    source = ["--source", str(fixture_build), "--split", "cv", "--predictions", str(development_truth)]
    page, text, result = run_report(tmp_path, *source, "--compare", str(moved), "--classes", *recipe.CLASSES)
    assert_page_matches_json(page, result)
    assert_self_contained(page, text)
    assert any(image.get("id") == "forest" for image in page.images)
    comparison = result["comparison"]
    # The headline's difference and each class's, as the text output prints them.
    rows = page.rows("comparison")
    left = comparison["classes"]["Left Lung"]["dice"]
    assert left["excludes_zero"] and rows["Left Lung"][2] == (
        f"{left['difference']:+.3f} [{left['ci95'][0]:+.3f}, {left['ci95'][1]:+.3f}] *"
    )
    assert "Headline difference" in page.sections["comparison"]
    # Where they differ: the two images' left lungs, A's Dice 1, B's from --json.
    differ = page.tables["differ"]["rows"]
    expected = sorted(
        ((image["image_id"], image["dice_b"]["Left Lung"]) for image in comparison["images"]),
        key=lambda pair: (pair[1], pair[0]),
    )
    assert [(int(row[0]), row[2], row[3], row[4]) for row in differ] == [
        (image_id, "Left Lung", "1.000", f"{dice_b:.3f}") for image_id, dice_b in expected
    ]


def test_the_worst_cases_are_scored_pairs_lowest_dice_first():
    def image(image_id: int, **pairs: dict) -> dict:
        return {"image_id": image_id, "patient_id": image_id, "split": "test", "fold": None, "classes": pairs}

    result = {
        "classes": {"Left Lung": {}, "Pneumothorax": {}},
        "images": [
            image(1, **{"Left Lung": {"dice": 0.5, "nsd": 0.2}, "Pneumothorax": {"skipped": "both_empty"}}),
            image(2, **{"Left Lung": {"skipped": "flagged_missing"}, "Pneumothorax": {"skipped": "null_truth"}}),
            image(3, **{"Left Lung": {"dice": 0.5, "nsd": 0.1}, "Pneumothorax": {"dice": 0.0, "nsd": 0.0}}),
            image(4, **{"Left Lung": {"dice": 0.9, "nsd": 0.9}, "Pneumothorax": {"skipped": "both_empty"}}),
        ],
    }
    chosen = worst_cases.worst_pairs(result, count=2)
    # A skipped pair (flagged missing, null, both empty) has no Dice: never a failure shown.
    assert {name: [entry["image_id"] for entry in images] for name, images in chosen.items()} == {
        "Left Lung": [3, 1],  # equal Dice: the lower NSD first
        "Pneumothorax": [3],
    }


def test_a_report_that_cannot_be_written_is_one_error_and_leaves_no_file(
    fixture_build, development_truth, tmp_path, capsys
):
    request = evaluate.EvaluateRequest(source=str(fixture_build), predictions=development_truth, split="cv")
    result = evaluate.evaluate(request)
    target = tmp_path / "missing" / "report.html"
    with pytest.raises(evaluate.ReportError, match=r"report='.*missing/report\.html': cannot write the file \(No such"):
        evaluate.write_report(result, request=request, options=evaluate.ReportOptions(path=target))
    with pytest.raises(evaluate.ReportError, match=r"report_worst=0: must be at least 1"):
        evaluate.write_report(
            result, request=request, options=evaluate.ReportOptions(path=tmp_path / "x.html", worst=0)
        )
    folder = tmp_path / "a-folder"
    folder.mkdir()
    args = ["evaluate", "--source", str(fixture_build), "--predictions", str(development_truth), "--split", "cv"]
    for bad in (target, folder):
        capsys.readouterr()
        assert covid_seg([*args, "--report", str(bad)]) == 1
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and re.fullmatch(
            rf"error: --report {re.escape(str(bad))}: cannot write the file \(.+\)", lines[0]
        )
        assert "wrote" not in captured.out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-folder"] and not any(folder.iterdir())
    assert covid_seg([*args, "--report", str(tmp_path / "x.html"), "--report-worst", "0"]) == 2
    assert "argument --report-worst: must be at least 1, got 0" in capsys.readouterr().err


def test_the_help_shows_the_report(capsys):
    assert covid_seg(["evaluate", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--report FILE.html" in text and "--report-worst K" in text and "--report atlas-cv.html" in text


def test_markdown_tables_become_the_same_cells():
    text = (
        "Intro **bold** `code`.\n\n| Class | n | Dice |\n| --- | ---: | --- |\n| Left Lung | 3 | 0.500 [0.1, 0.9] * |\n"
    )
    blocks = markdown_html.markdown_blocks(text)
    assert blocks[0] == "Intro **bold** `code`."
    table = blocks[1]
    assert table.head == ["Class", "n", "Dice"] and table.numeric == {1}
    rendered = markdown_html.table_html(table, ident="t")
    page = Page(rendered)
    assert page.tables["t"]["rows"] == [["Left Lung", "3", "0.500 [0.1, 0.9] *"]]
    assert '<span class="ci">[0.1, 0.9] <span class="mark">*</span></span>' in rendered
    assert markdown_html.inline("a <b> **c** `d`") == "a &lt;b&gt; <strong>c</strong> <code>d</code>"


# Machado, Oliveira & Fernandes (2009), "A physiologically-based model for simulation of color
# vision deficiency", IEEE TVCG 15(6): the severity-1.0 matrices, on linear RGB.
CVD = {
    "protanopia": ((0.152286, 1.052583, -0.204868), (0.114503, 0.786281, 0.099216), (-0.003882, -0.048116, 1.051998)),
    "deuteranopia": ((0.367322, 0.860646, -0.227968), (0.280085, 0.672501, 0.047413), (-0.011820, 0.042940, 0.968881)),
    "tritanopia": ((1.255528, -0.076749, -0.178779), (-0.078411, 0.930809, 0.147602), (0.004733, 0.691367, 0.303900)),
}


def simulate(colour, matrix) -> np.ndarray:
    linear = np.asarray(colour, dtype=float) / 255
    linear = np.where(linear <= 0.04045, linear / 12.92, ((linear + 0.055) / 1.055) ** 2.4)
    seen = np.clip(np.asarray(matrix) @ linear, 0, 1)
    return 255 * np.where(seen <= 0.0031308, 12.92 * seen, 1.055 * seen ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("vision", ["normal", *CVD])
def test_the_outcome_colours_stay_apart_for_colour_blind_readers(vision):
    # As drawn: blended at OUTCOME_ALPHA over the greys of a lung field and of the mediastinum.
    for grey in (60, 110, 160):
        drawn = [
            figures.OUTCOME_ALPHA * np.asarray(colour, dtype=float) + (1 - figures.OUTCOME_ALPHA) * grey
            for colour in figures.OUTCOME_COLOURS.values()
        ]
        seen = drawn if vision == "normal" else [simulate(colour, CVD[vision]) for colour in drawn]
        closest = min(ciede2000(srgb_to_lab(a), srgb_to_lab(b)) for a, b in itertools.combinations(seen, 2))
        assert closest >= 15, (vision, grey, closest)


def test_a_thumbnail_colours_each_outcome_and_keeps_the_aspect_ratio():
    truth = np.zeros((256, 256), bool)
    prediction = np.zeros((256, 256), bool)
    truth[50:150, 50:150] = True
    prediction[100:200, 100:200] = True
    png = figures.outcome_thumbnail(
        np.full((256, 256), 128, np.uint8), truth=truth, prediction=prediction, aspect=(2000, 1000)
    )
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.size == (256, 128)
        pixels = np.asarray(picture.convert("RGB"))
    expected = {
        outcome: np.rint(figures.OUTCOME_ALPHA * np.asarray(colour) + (1 - figures.OUTCOME_ALPHA) * 128)
        for outcome, colour in figures.OUTCOME_COLOURS.items()
    }
    # Sampled inside each region (the resize blends only their borders); rows halve, columns stay.
    assert np.abs(pixels[62, 125].astype(int) - expected["tp"]).max() <= 1
    assert np.abs(pixels[87, 175].astype(int) - expected["fp"]).max() <= 1
    assert np.abs(pixels[35, 70].astype(int) - expected["fn"]).max() <= 1
    assert tuple(pixels[120, 10]) == (128, 128, 128)


def test_the_truth_under_cv_on_the_full_data_agrees_with_itself(real_truth_cv):
    text = (real_truth_cv / "output.txt").read_text(encoding="utf-8")
    result = json.loads((real_truth_cv / "scores.json").read_text())
    page = Page((real_truth_cv / "report.html").read_text(encoding="utf-8"))
    # The headline first, in the text, the JSON and the page.
    assert result["summary"]["dice"] == {"mean": 1.0, "ci95": [1.0, 1.0]} and result["summary"]["nsd"]["mean"] == 1.0
    assert text.startswith("**Headline** `cv`: Dice 1.000 [1.000, 1.000], NSD 1.000 [1.000, 1.000]")
    assert "Dice 1.000 [1.000, 1.000], NSD 1.000 [1.000, 1.000]" in " ".join(page.sections["headline"].split())
    # The truth's masks agree with the expert scores as well as themselves, on about half the images.
    severity = page.rows("severity")
    assert len(severity) == 2
    for column, entry in result["severity"].items():
        assert entry["predicted"] == entry["truth"] and entry["predicted"] > 0.5, column
        assert 45 <= entry["n"] <= 60
        low, high = entry["interval"]
        assert low < entry["predicted"] < high
        row = severity[f"{column}"]
        assert row[2].split(" [")[0] == row[3] == f"{entry['truth']:.2f}"


def test_a_hub_source_draws_from_size_256_and_names_its_commit(hub, token, fixture_build, development_truth, tmp_path):
    repo = "org/covid-chestxray-seg"
    assert covid_seg(["publish", "--source", str(fixture_build), "--repo-id", repo, "--quiet"]) == 0
    commit = hub.state.commits(repo)[-1].oid
    args = ["--source", repo, "--split", "cv", "--predictions", str(development_truth), "--classes", *recipe.CLASSES]

    def default_bytes() -> int:
        # The default config's shards (full-size images and masks), not size-256's.
        requests = hub.state.requests("GET", r"/data/(licensed|license-unknown)/.*\.parquet")
        return sum(request.sent for request in requests)

    before = default_bytes()
    page, text, result = run_report(tmp_path, *args)
    with_report = default_bytes() - before
    assert with_report > 0  # the mask columns scoring reads
    assert hub.state.requests("GET", r"/data/(licensed|license-unknown)-256/.*\.parquet")
    assert_page_matches_json(page, result)
    assert_self_contained(page, text)
    assert f"{repo} at commit {commit}" in " ".join(page.sections["scored"].split())
    assert len(page.cases) == 10
    # Scoring alone reads as much of the default config: the pictures cost none of it.
    before = default_bytes()
    assert covid_seg(["evaluate", *args, "--quiet"]) == 0
    assert default_bytes() - before == with_report


def test_a_build_without_size_256_is_drawn_from_its_full_size_images(fixture_build, development_truth, tmp_path):
    import shutil

    from covid_chestxray_seg_tools.hub_folder import checksums, layout

    build = tmp_path / "build"
    shutil.copytree(fixture_build, build)
    # As a builder before the size-256 configs wrote it: no such shards, declared or listed.
    for part in layout.SIZE_256_PARTS.values():
        shutil.rmtree(build / layout.DATA_DIR / part)
    infos = json.loads((build / layout.INFOS_FILENAME).read_text())
    for config in layout.SIZE_256_CONFIGS:
        del infos[config]
    (build / layout.INFOS_FILENAME).write_text(json.dumps(infos))
    checksums.write(build)
    args = ["--source", str(build), "--split", "cv", "--predictions", str(development_truth)]
    page, text, _ = run_report(tmp_path, *args, "--classes", *recipe.CLASSES)
    assert_self_contained(page, text)
    assert len(page.cases) == 10
    assert "drawn from the full-size images and masks brought down by the size-256 rules" in " ".join(
        page.sections["worst"].split()
    )
    # The same pictures as from the size-256 config: the same rules.
    (tmp_path / "reference").mkdir()
    reference, _, _ = run_report(
        tmp_path / "reference", "--source", str(fixture_build), *args[2:], "--classes", *recipe.CLASSES
    )
    assert [image["src"] for image in page.images] == [image["src"] for image in reference.images]
