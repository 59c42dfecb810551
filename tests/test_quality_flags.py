"""The `quality_flags` column: missing, doubled and wrong-side anatomy, computed by the builder."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from tests.helpers import FIXTURE_SEVERITY, parquet_rows

LEFT, RIGHT = recipe.CLASSES.index("Left Lung"), recipe.CLASSES.index("Right Lung")

# Upstream's own annotation gaps (structure.csv shows them too): the data README lists them.
REAL_FLAGS = {
    "covid-19-pneumonia-12.jpg": ["missing:mask_left_lung"],
    "acute-respiratory-distress-syndrome-ards-1.jpg": ["missing:mask_right_lung"],
    "auntminnie-d-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg": [
        "duplicate:mask_right_lung",
        "missing:mask_airways",
    ],
}


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(mask.shape), "counts": encoded["counts"].decode()}


def box(height: int, width: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[10:30, x0:x1] = True
    return mask


def anatomy(width: int = 100, height: int = 40) -> list[dict]:
    """A well-annotated image: the right lung on the image's left, the left lung on its right."""
    return [
        {"category": RIGHT, "segmentation": rle(box(height, width, 5, 40))},
        {"category": LEFT, "segmentation": rle(box(height, width, 60, 95))},
        {"category": recipe.CLASSES.index("Cardiomediastinum"), "segmentation": rle(box(height, width, 40, 60))},
        {"category": recipe.CLASSES.index("Airways"), "segmentation": rle(box(height, width, 45, 55))},
    ]


def test_flag_codes_are_kind_and_mask_column():
    assert recipe.quality_flag("missing", "mask_left_lung") == "missing:mask_left_lung"
    for kind in recipe.QUALITY_FLAG_KINDS:
        for column in recipe.MASK_COLUMNS:
            assert recipe.parse_quality_flag(recipe.quality_flag(kind, column)) == (kind, column)
    with pytest.raises(ValueError, match=r"quality flag kind 'absent' is not one of"):
        recipe.quality_flag("absent", "mask_left_lung")
    with pytest.raises(ValueError, match=r"'left_lung' is not a mask column"):
        recipe.quality_flag("missing", "left_lung")
    for bad in ("missing", "missing:", "gone:mask_left_lung", "missing:mask_spleen"):
        with pytest.raises(ValueError, match=r"is not a quality flag"):
            recipe.parse_quality_flag(bad)


def test_expected_classes_are_the_anatomy():
    anatomy_classes = tuple(name for name in recipe.CLASSES if recipe.SUPERCATEGORIES[name] == "Anatomical")
    assert anatomy_classes == recipe.EXPECTED_CLASSES
    assert set(recipe.EXPECTED_SIDE) == {"Left Lung", "Right Lung"}


@pytest.mark.parametrize("seed", range(5))
def test_rle_centroid_equals_the_decoded_masks_centroid(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(5, 60, size=2)
    mask = rng.random((height, width)) < rng.uniform(0.05, 0.9)
    expected = np.nonzero(mask)[1].mean() + 0.5
    assert recipe.rle_centroid_x(rle(mask)) == pytest.approx(expected, abs=1e-9)


def test_rle_centroid_of_an_empty_mask_is_none():
    assert recipe.rle_centroid_x(rle(np.zeros((7, 9), dtype=bool))) is None


def test_a_well_annotated_image_has_no_flag():
    assert recipe.quality_flags(anatomy(), width=100) == []


def test_missing_duplicated_and_wrong_side_anatomy_is_flagged():
    annotations = anatomy()
    without_left = [a for a in annotations if a["category"] != LEFT]
    assert recipe.quality_flags(without_left, width=100) == ["missing:mask_left_lung"]
    doubled = [*annotations, annotations[0]]
    assert recipe.quality_flags(doubled, width=100) == ["duplicate:mask_right_lung"]
    swapped = [{**a, "category": {LEFT: RIGHT, RIGHT: LEFT}.get(a["category"], a["category"])} for a in annotations]
    assert recipe.quality_flags(swapped, width=100) == ["wrong_side:mask_left_lung", "wrong_side:mask_right_lung"]
    # A second right lung on the left lung's side: doubled and on the wrong side; no airways.
    stray = {"category": RIGHT, "segmentation": rle(box(40, 100, 70, 90))}
    no_airways = [a for a in annotations if recipe.CLASSES[a["category"]] != "Airways"]
    assert recipe.quality_flags([*no_airways, stray], width=100) == [
        "duplicate:mask_right_lung",
        "wrong_side:mask_right_lung",
        "missing:mask_airways",
    ]


def test_a_lung_without_a_mask_is_not_judged_for_its_side():
    annotations = [*anatomy(), {"category": LEFT, "segmentation": None}]
    assert recipe.quality_flags(annotations, width=100) == ["duplicate:mask_left_lung"]


def test_the_builder_flags_a_removed_and_a_duplicated_lung(data_copy, tmp_path, caplog):
    path = data_copy / "annotation" / "results.json"
    coco = json.loads(path.read_text())
    lung_ids = {c["id"]: c["name"] for c in coco["categories"] if c["name"] in ("Left Lung", "Right Lung")}
    first, second = (image["id"] for image in coco["images"][:2])
    # Image 1 loses its Left Lung; image 2 gets its Right Lung twice.
    coco["annotations"] = [
        a for a in coco["annotations"] if not (a["image_id"] == first and lung_ids.get(a["category_id"]) == "Left Lung")
    ]
    right = next(
        a for a in coco["annotations"] if a["image_id"] == second and lung_ids.get(a["category_id"]) == "Right Lung"
    )
    coco["annotations"].append({**right, "id": max(a["id"] for a in coco["annotations"]) + 1})
    path.write_text(json.dumps(coco))
    names = {image["id"]: image["file_name"] for image in coco["images"]}

    builder = recipe.CovidChestXraySeg(
        data_dir=str(data_copy),
        severity_file=str(FIXTURE_SEVERITY),
        cache_dir=str(tmp_path / "cache"),
        verify_upstream=False,
    )
    with caplog.at_level(logging.WARNING):
        builder.download_and_prepare()
    rows = {row["file_name"]: row["quality_flags"] for split in builder.as_dataset().values() for row in split}
    assert rows == {
        names[first]: ["missing:mask_left_lung"],
        names[second]: ["duplicate:mask_right_lung"],
        names[coco["images"][2]["id"]]: [],
    }
    assert builder.report.quality_flags == {
        names[first]: ["missing:mask_left_lung"],
        names[second]: ["duplicate:mask_right_lung"],
    }
    assert builder.report.flag_counts() == {"duplicate:mask_right_lung": 1, "missing:mask_left_lung": 1}
    assert "2 images carry quality flags (duplicate:mask_right_lung 1, missing:mask_left_lung 1)" in caplog.text


def test_the_fixture_build_has_an_empty_flag_list_on_every_row(fixture_build):
    rows = parquet_rows(fixture_build, columns=["quality_flags"])
    assert [row["quality_flags"] for row in rows] == [[], [], []]


@pytest.mark.slow
def test_the_three_upstream_gaps_carry_exactly_their_flags(real_build):
    rows = parquet_rows(real_build, columns=["file_name", "quality_flags"])
    assert len(rows) == 100
    flagged = {row["file_name"]: row["quality_flags"] for row in rows if row["quality_flags"]}
    assert flagged == REAL_FLAGS
    assert sum(row["quality_flags"] == [] for row in rows) == 97
    card = (real_build / "README.md").read_text()
    known_issues = card.split("## Known issues")[1].split("\n## ")[0]
    for name, flags in REAL_FLAGS.items():
        for flag in flags:
            assert f"| `{name}` |" in known_issues and f"`{flag}` |" in known_issues
    for kind in ("missing", "duplicate"):
        assert f"`{kind}:<mask column>`:" in known_issues
