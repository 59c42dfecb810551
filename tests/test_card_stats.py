"""The card's statistics in two passes, each on hand-made data: the per-image pass
(`image_facts`, from a row's RLE) and the summary over images (`summarise`). The built cards'
numbers are checked against the Parquet files in test_card.py and test_card_facts.py."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from covid_chestxray_seg_tools.card import stats
from covid_chestxray_seg_tools.card.stats import OVERLAP_CLASSES


def stored_rle(columns: range, rows: range = range(4), *, width: int = 10, height: int = 4) -> dict:
    """A stored segmentation ({"size", "counts": str}) of the pixels in `columns` x `rows`."""
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[rows.start : rows.stop, columns.start : columns.stop] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")}


def shares(name: str, **given: float) -> dict[str, float]:
    """An image's overlap shares of class `name`: 0 but for those `given` (left, right or ggo)."""
    named = {"left": "Left Lung", "right": "Right Lung", "ggo": "Ground Glass Opacities"}
    return {other: 0.0 for other in OVERLAP_CLASSES if other != name} | {named[k]: v for k, v in given.items()}


def test_image_facts_of_a_hand_made_row():
    # A 10 x 4 image: the left lung in columns 6-9 (16 px), the right lung twice (columns 0-1
    # and 1-2: a union of 12 px), ground glass in columns 2-7 of rows 0-1 (12 px), a probe
    # without a mask, a tube in column 5 (4 px).
    objects = [
        {"category": 0, "segmentation": stored_rle(range(6, 10))},
        {"category": 1, "segmentation": stored_rle(range(2))},
        {"category": 1, "segmentation": stored_rle(range(1, 3))},
        {"category": 4, "segmentation": stored_rle(range(2, 8), range(2))},
        {"category": 10, "segmentation": None},
        {"category": 11, "segmentation": stored_rle(range(5, 6))},
    ]
    row = {
        "file_name": "x.png",
        "patient_id": 7,
        "license": None,
        "finding": "COVID-19",
        "width": 10,
        "height": 4,
        "objects": objects,
        "fold": 2,
        "severity_geographic_extent": 3.5,
        "sex": None,
        "age": 40,
        "view": "PA",
        "modality": "X-ray",
        "clinical_notes": "Portable AP film",
        "other_notes": None,
        "quality_flags": ["duplicate:mask_right_lung"],
    }
    facts = stats.image_facts(row, split="validation")
    assert facts == stats.ImageFacts(
        file_name="x.png",
        split="validation",
        patient=7,
        fold=2,
        finding="COVID-19",
        license="none given",
        severity_scored=True,
        annotations=6,
        sex="missing",
        age=40,
        view="PA",
        modality="X-ray",
        quality_flags=("duplicate:mask_right_lung",),
        view_conflict=("Portable", "AP"),
        classes={
            "Left Lung": stats.ClassFacts(instances=1, without_segmentation=0, area_pct=40.0),
            "Right Lung": stats.ClassFacts(instances=2, without_segmentation=0, area_pct=30.0),
            "Ground Glass Opacities": stats.ClassFacts(instances=1, without_segmentation=0, area_pct=30.0),
            "Monitoring Probes": stats.ClassFacts(instances=1, without_segmentation=1, area_pct=None),
            "Nasogastric Tube": stats.ClassFacts(instances=1, without_segmentation=0, area_pct=10.0),
        },
        sides={"Left Lung": (True,), "Right Lung": (True, True)},
        overlap={
            "Left Lung": shares("Left Lung", ggo=4 / 16),
            "Right Lung": shares("Right Lung", ggo=2 / 12),
            "Ground Glass Opacities": shares("Ground Glass Opacities", left=4 / 12, right=2 / 12),
        },
        # Devices count here (the tube crosses the ground glass), not in the overlap shares.
        overlapping_pairs=((0, 4), (1, 4), (4, 11)),
    )
    assert list(facts.classes) == [
        "Left Lung",
        "Right Lung",
        "Ground Glass Opacities",
        "Monitoring Probes",
        "Nasogastric Tube",
    ]
    # Not PA: the same notes contradict nothing.
    assert stats.image_facts({**row, "view": "AP"}, split="validation").view_conflict == ()


def hand_made_facts(**fields) -> stats.ImageFacts:
    """An image with nothing on it but `fields`."""
    empty = stats.ImageFacts(
        file_name="",
        split="train",
        patient=None,
        fold=None,
        finding="none given",
        license="none given",
        severity_scored=False,
        annotations=0,
        sex="missing",
        age=None,
        view="missing",
        modality="missing",
        quality_flags=(),
        view_conflict=(),
        classes={},
        sides={},
        overlap={},
        overlapping_pairs=(),
    )
    return dataclasses.replace(empty, **fields)


def test_summarise_adds_up_hand_made_facts():
    left = stats.ClassFacts(instances=1, without_segmentation=0, area_pct=40.0)
    images = [
        hand_made_facts(
            file_name="c.png",
            patient=1,
            fold=0,
            finding="Pneumonia",
            license="CC BY",
            severity_scored=True,
            annotations=3,
            sex="M",
            age=40,
            quality_flags=("missing:mask_airways",),
            classes={"Left Lung": left},
            sides={"Left Lung": (True,), "Right Lung": (True, False)},
            overlap={"Left Lung": shares("Left Lung", ggo=0.25)},
            overlapping_pairs=((0, 4), (4, 11)),
        ),
        hand_made_facts(
            file_name="b.png",
            patient=1,
            fold=0,
            finding="COVID-19",
            annotations=2,
            classes={"Left Lung": stats.ClassFacts(instances=2, without_segmentation=1, area_pct=None)},
            sides={"Left Lung": (False,)},
            overlap={"Left Lung": shares("Left Lung", right=0.1)},
            overlapping_pairs=((0, 1),),
        ),
        hand_made_facts(
            file_name="a.png",
            split="test",
            patient=2,
            finding="COVID-19",
            annotations=1,
            age=60,
            view="PA",
            view_conflict=("supine",),
            quality_flags=("duplicate:mask_left_lung",),
            overlapping_pairs=((0, 4),),
        ),
    ]
    summary = stats.summarise(images, files={"train": 2, "validation": 0, "test": 1})
    assert (summary["images"], summary["annotations"], summary["patients"]) == (3, 6, 2)
    # Patient 1's two images are a series.
    assert (summary["patients_with_series"], summary["images_in_series"], summary["largest_series"]) == (1, 2, 2)
    assert summary["splits"] == {
        "train": {"images": 2, "patients": 1, "annotations": 5, "files": 2},
        "validation": {"images": 0, "patients": 0, "annotations": 0, "files": 0},
        "test": {"images": 1, "patients": 1, "annotations": 1, "files": 1},
    }
    # The commonest finding first; the licences too, whatever their name.
    assert list(summary["findings"].items()) == [
        ("COVID-19", {"train": 1, "validation": 0, "test": 1}),
        ("Pneumonia", {"train": 1, "validation": 0, "test": 0}),
    ]
    assert list(summary["licenses"].items()) == [("none given", 2), ("CC BY", 1)]
    assert summary["folds"][0] == {"images": 2, "patients": 1, "findings": Counter({"Pneumonia": 1, "COVID-19": 1})}
    assert summary["folds"][1] == {"images": 0, "patients": 0, "findings": Counter()}
    assert summary["images_with_severity"] == 1
    assert summary["classes"]["Left Lung"] == {
        "instances": 3,
        "images": 2,
        "without_segmentation": 1,
        "mean_area_pct": 40.0,
        "median_area_pct": 40.0,
    }
    assert summary["classes"]["Airways"]["mean_area_pct"] is None
    lung = summary["overlap"]["Left Lung"]
    assert lung["images"] == 2
    assert lung["mean_pct"]["Ground Glass Opacities"] == 12.5 and lung["max_pct"]["Ground Glass Opacities"] == 25.0
    assert lung["mean_pct"]["Right Lung"] == pytest.approx(5.0) and lung["max_pct"]["Right Lung"] == pytest.approx(10.0)
    # A class has no share of itself, and a class never drawn has none of any other.
    assert lung["mean_pct"]["Left Lung"] is None
    assert summary["overlap"]["Pneumothorax"]["images"] == 0
    assert set(summary["overlap"]["Pneumothorax"]["mean_pct"].values()) == {None}
    assert summary["overlapping_pairs"] == [(0, 1), (0, 4), (4, 11)]
    assert summary["sides"] == {
        "Left Lung": {"instances": 2, "expected_side": 1},
        "Right Lung": {"instances": 2, "expected_side": 1},
    }
    # By file name, whatever the split.
    assert summary["quality_flags"] == [
        {"file_name": "a.png", "split": "test", "flags": ["duplicate:mask_left_lung"]},
        {"file_name": "c.png", "split": "train", "flags": ["missing:mask_airways"]},
    ]
    assert summary["view_conflicts"] == [{"file_name": "a.png", "split": "test", "hints": ["supine"]}]
    assert summary["metadata"] == {
        "sex": {"M": 1, "missing": 2},  # "missing" last though the commonest
        "age_median": 50.0,
        "age_min": 40,
        "age_max": 60,
        "age_known": 2,
        "age_missing": 1,
        "view": {"PA": 1, "missing": 2},
        "modality": {"missing": 3},
    }
