"""The COCO export reads in pycocotools' COCOeval: the ground truth, scored as its own
detections, gets AP 1.0 for segm and bbox on every split of the real data."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from covid_chestxray_seg_tools.cli import main as covid_seg

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def coco_export(real_build, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coco-eval") / "coco"
    assert covid_seg(["export", "--source", str(real_build), "--format", "coco", "--out", str(out)]) == 0
    return out


def self_score(gt: COCO, iou_type: str) -> COCOeval:
    """COCOeval of the ground truth against itself as detections (score 1)."""
    key = "segmentation" if iou_type == "segm" else "bbox"
    detections = [
        {"image_id": a["image_id"], "category_id": a["category_id"], key: a[key], "score": 1.0}
        for a in gt.dataset["annotations"]
    ]
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress and table
        evaluation = COCOeval(gt, gt.loadRes(detections), iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
@pytest.mark.parametrize("split", SPLITS)
def test_the_ground_truth_as_detections_scores_ap_1(coco_export, split, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(coco_export / "annotations" / f"{split}.json"))
    assert gt.dataset["annotations"] and all(a["segmentation"] for a in gt.dataset["annotations"])
    assert self_score(gt, iou_type).stats[0] == 1.0


def test_annotations_without_mask_are_left_out_and_counted(real_build, coco_export, tmp_path, capsys, caplog):
    counts = sum(
        len(json.loads((coco_export / "annotations" / f"{split}.json").read_text())["annotations"]) for split in SPLITS
    )
    assert counts == 602 - 14
    with caplog.at_level("INFO"):
        assert (
            covid_seg(
                [
                    "export",
                    "--source",
                    str(real_build),
                    "--format",
                    "coco",
                    "--out",
                    str(tmp_path / "coco"),
                    "--split",
                    "test",
                ]
            )
            == 0
        )
    assert "images 16, annotations 97, annotations without mask upstream (left out) 4\n" in capsys.readouterr().out
    assert (
        "annotations have no mask upstream: left out, as COCOeval cannot read `segmentation: []` "
        "(an export in upstream's form keeps them)"
    ) in caplog.text
