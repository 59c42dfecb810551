"""Data-quality report: the COCO segmentations against upstream's own mask crops.

For every annotation with a segmentation, the mask it decodes to is compared with the
crop in masks/ placed at its offset (structure.csv): IoU per annotation and a summary
per class. Bboxes and areas are checked against the masks; annotations without a
segmentation and images missing from metadata.csv are listed. Hard errors (bad input,
a missing crop, an image missing from the metadata) are collected, not raised, so the
report always says everything it found.
"""

from __future__ import annotations

import csv
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.validate import crops as upstream_crops

__all__ = ["ClassAgreement", "Report", "format_report", "report_json", "validate"]

# A bbox is "consistent" when every side is within this many pixels of the mask's own box:
# polygon exports round outward by up to a pixel.
_BBOX_TOLERANCE = 1.0


class ClassAgreement(TypedDict):
    """One class's segmentations against upstream's crops: how many were compared, their mean
    and lowest IoU, and how many are identical pixel for pixel."""

    compared: int
    mean_iou: float
    min_iou: float
    exact: int


@dataclass
class Report:
    """What `validate` found.

    Attributes:
        annotation_file: the COCO file checked, relative to the data folder.
        annotations: annotations in it.
        compared: annotations compared with a crop.
        iou: class -> the IoU of each compared annotation with its crop.
        without_segmentation: ids of the annotations without a segmentation.
        bbox_mismatches: (annotation id, its bbox, the bbox of its mask) where a side is off by
            more than a pixel.
        area_mismatches: (annotation id, its area, the pixels of its mask) where they differ by
            more than 5 % (and a pixel).
        images_without_metadata: file names of images missing from metadata.csv.
        hard_errors: what makes the data unusable as it is (a file that cannot be read, a
            missing crop, images missing from metadata.csv); `covid-seg validate` exits 1.
    """

    annotation_file: str
    annotations: int = 0
    compared: int = 0
    iou: dict[str, list[float]] = field(default_factory=dict)
    without_segmentation: list[int] = field(default_factory=list)
    bbox_mismatches: list[tuple[int, list[float], list[float]]] = field(default_factory=list)
    area_mismatches: list[tuple[int, float, int]] = field(default_factory=list)
    images_without_metadata: list[str] = field(default_factory=list)
    hard_errors: list[str] = field(default_factory=list)

    def per_class(self) -> dict[str, ClassAgreement]:
        """Per class with compared annotations, in class order: the IoU summarised."""
        return {
            name: ClassAgreement(
                compared=len(self.iou[name]),
                mean_iou=statistics.fmean(self.iou[name]),
                min_iou=min(self.iou[name]),
                exact=sum(v == 1.0 for v in self.iou[name]),
            )
            for name in recipe.CLASSES
            if self.iou.get(name)
        }

    def summary(self) -> str:
        """One paragraph: compared, identical, the lowest mean IoU, and what differs or is missing."""
        exact = sum(row["exact"] for row in self.per_class().values())
        worst = min(self.per_class().items(), key=lambda item: item[1]["mean_iou"], default=None)
        text = (
            f"{self.compared} of {self.annotations} annotations compared with upstream's mask crops: "
            f"{exact} identical pixel for pixel"
        )
        if worst and worst[1]["mean_iou"] < 1.0:
            text += f"; lowest mean IoU {worst[1]['mean_iou']:.3f} ({worst[0]})"
        text += (
            f"; {len(self.without_segmentation)} without segmentation; "
            f"{len(self.bbox_mismatches)} bboxes and {len(self.area_mismatches)} areas differ from their masks; "
            f"{len(self.images_without_metadata)} images missing from metadata.csv."
        )
        return text


def validate(*, data_dir: Path, annotation_file: str = recipe.ANNOTATION_FILE) -> Report:
    """Compare every COCO segmentation of upstream's data with upstream's own mask crops.

    Each annotation's decoded mask is compared with the crop in `masks/` placed where
    structure.csv says (IoU; with several crops of one class on one image, the best match), and
    its bbox and area with the mask's own.

    Args:
        data_dir: a copy of the upstream repository (annotation/, masks/, structure.csv,
            metadata.csv).
        annotation_file: the COCO file inside it.

    Returns:
        The report. Input that cannot be used (a missing or broken file, a crop that cannot be
        read or is missing, images missing from metadata.csv) is listed in its `hard_errors`
        rather than raised, so the report says everything it found.
    """
    report = Report(annotation_file=annotation_file)
    try:
        coco = recipe.CocoAnnotations(data_dir / annotation_file, report=recipe.BuildReport())
    except recipe.BuildError as error:
        report.hard_errors.append(str(error))
        return report
    crops = _crops_by_image_and_class(data_dir, report)
    metadata_names = _metadata_file_names(data_dir / recipe.METADATA_FILE, report)
    for image in coco.images:
        if metadata_names is not None and image["file_name"] not in metadata_names:
            report.images_without_metadata.append(image["file_name"])
        for annotation in coco.annotations_for(image["id"]):
            report.annotations += 1
            name = recipe.CLASSES[annotation["category"]]
            if annotation["segmentation"] is None:
                report.without_segmentation.append(annotation["id"])
                continue
            rle = recipe.rle_for_pycocotools(annotation["segmentation"])
            mask = mask_utils.decode(rle).view(bool)
            pixels = int(mask_utils.area(rle))
            _check_bbox_and_area(annotation, rle, pixels, report)
            candidates = crops.get((image["file_name"], name), [])
            if not candidates:
                report.hard_errors.append(
                    f"annotation id {annotation['id']}: no crop of {name!r} for {image['file_name']!r}"
                )
                continue
            # Several crops of one class on one image: the annotation is the one it overlaps most.
            best = max(_iou(mask, pixels, crop, top, left) for top, left, crop in candidates)
            report.iou.setdefault(name, []).append(best)
            report.compared += 1
    if report.images_without_metadata:
        report.hard_errors.append(f"{len(report.images_without_metadata)} images missing from {recipe.METADATA_FILE}")
    return report


def _crops_by_image_and_class(
    data_dir: Path, report: Report
) -> dict[tuple[str, str], list[tuple[int, int, np.ndarray]]]:
    """(file name, class) -> [(top, left, crop)], each crop kept apart: one per annotation."""
    crops: dict[tuple[str, str], list[tuple[int, int, np.ndarray]]] = {}
    path = data_dir / upstream_crops.STRUCTURE_FILE
    try:
        rows = upstream_crops.structure_rows(data_dir)
    except FileNotFoundError:
        report.hard_errors.append(f"{path}: file not found (the crops cannot be compared)")
        return crops
    for line, row in enumerate(rows, start=2):
        if not row.get("Mask"):
            continue
        try:
            crop = upstream_crops.read_crop(data_dir, row)
        except (OSError, ValueError) as error:
            report.hard_errors.append(f"{path}: line {line}: crop {row['Mask']!r} cannot be read: {error}")
            continue
        crops.setdefault((row["Filename"], upstream_crops.class_of(row)), []).append(
            (int(row["Top"]), int(row["Left"]), crop)
        )
    return crops


def _metadata_file_names(path: Path, report: Report) -> set[str] | None:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return {row[recipe.METADATA_JOIN_COLUMN] for row in csv.DictReader(handle)}
    except FileNotFoundError:
        report.hard_errors.append(f"{path}: file not found")
        return None


def _iou(mask: np.ndarray, pixels: int, crop: np.ndarray, top: int, left: int) -> float:
    """IoU of the full-size mask (with `pixels` set) and the crop placed at (left, top)."""
    window = mask[top : top + crop.shape[0], left : left + crop.shape[1]]
    if window.shape != crop.shape:
        return 0.0
    inside = int(np.count_nonzero(window & crop))
    union = pixels + int(np.count_nonzero(crop)) - inside
    return inside / union if union else 1.0


def _check_bbox_and_area(annotation: dict[str, Any], rle: dict[str, Any], pixels: int, report: Report) -> None:
    from_mask = [float(v) for v in mask_utils.toBbox(rle)]
    given = annotation["bbox"]
    if any(abs(a - b) > _BBOX_TOLERANCE for a, b in zip(given, from_mask)):
        report.bbox_mismatches.append((annotation["id"], given, from_mask))
    # Polygon areas are geometric, not pixel counts: allow what rasterizing the outline adds.
    if abs(annotation["area"] - pixels) > max(1.0, 0.05 * pixels):
        report.area_mismatches.append((annotation["id"], annotation["area"], pixels))


def format_report(report: Report) -> str:
    """The report as `covid-seg validate` prints it: a Markdown table per class, the summary, and
    the annotations without segmentation, the first 20 bbox and area mismatches and every hard
    error, a line each.

    Args:
        report: `validate`'s report.

    Returns:
        The text.
    """
    lines = [
        f"data-quality report for {report.annotation_file}",
        "",
        "| class | compared | mean IoU | min IoU | identical |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in report.per_class().items():
        lines.append(f"| {name} | {row['compared']} | {row['mean_iou']:.4f} | {row['min_iou']:.4f} | {row['exact']} |")
    lines += ["", report.summary()]
    if report.without_segmentation:
        lines.append(f"annotations without segmentation: {', '.join(map(str, report.without_segmentation))}")
    for annotation_id, bbox, from_mask in report.bbox_mismatches[:20]:
        lines.append(f"annotation id {annotation_id}: bbox {bbox} but its mask spans {from_mask}")
    for annotation_id, area, pixels in report.area_mismatches[:20]:
        lines.append(f"annotation id {annotation_id}: area {area} but its mask has {pixels} pixels")
    for error in report.hard_errors:
        lines.append(f"error: {error}")
    return "\n".join(lines)


def report_json(report: Report) -> dict[str, Any]:
    """The report as plain JSON values (`--json`): its fields, `per_class` and `summary`.

    Args:
        report: `validate`'s report.

    Returns:
        The dict `covid-seg validate --json` writes.
    """
    return {**asdict(report), "per_class": report.per_class(), "summary": report.summary()}
