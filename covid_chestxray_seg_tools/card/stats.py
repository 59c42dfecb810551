"""Card statistics computed from the written Parquet files, so the card cannot disagree with them."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout


def compute_stats(folder: Path) -> dict:
    """Counts per split, class, finding and licence, from the rows of the built folder.

    Mask areas come from the RLE in `objects` (union per class and image), not from
    decoding the PNG masks: the same pixels, a hundred times cheaper.
    """
    columns = [
        "image_id",
        "patient_id",
        "license",
        "finding",
        "width",
        "height",
        "objects",
        "fold",
        "severity_geographic_extent",
    ]
    per_class = {name: {"instances": 0, "images": 0, "without_segmentation": 0, "areas": []} for name in recipe.CLASSES}
    splits, licences, findings, images_per_patient = {}, Counter(), {}, Counter()
    folds = {fold: {"images": 0, "patients": set(), "findings": Counter()} for fold in range(recipe.FOLDS)}
    scored = 0
    for split in recipe.SPLITS:
        splits[split] = {
            "images": 0,
            "patients": set(),
            "annotations": 0,
            "files": len(layout.shard_paths(folder, split)),
        }
        findings[split] = Counter()
        for row in layout.iter_rows(folder, split, columns=columns):
            splits[split]["images"] += 1
            splits[split]["patients"].add(row["patient_id"])
            splits[split]["annotations"] += len(row["objects"])
            findings[split][row["finding"] or "none given"] += 1
            images_per_patient[row["patient_id"]] += 1
            licences[row["license"] or "none given"] += 1
            scored += row["severity_geographic_extent"] is not None
            if row["fold"] is not None:
                folds[row["fold"]]["images"] += 1
                folds[row["fold"]]["patients"].add(row["patient_id"])
                folds[row["fold"]]["findings"][row["finding"] or "none given"] += 1
            by_class: dict[str, list] = {}
            for obj in row["objects"]:
                name = recipe.CLASSES[obj["category"]]
                per_class[name]["instances"] += 1
                per_class[name]["without_segmentation"] += obj["segmentation"] is None
                by_class.setdefault(name, []).append(obj["segmentation"])
            for name, segmentations in by_class.items():
                per_class[name]["images"] += 1
                if all(seg is not None for seg in segmentations):
                    area = float(mask_utils.area(recipe.union_rle(segmentations)))
                    per_class[name]["areas"].append(100.0 * area / (row["width"] * row["height"]))
    for row in [*splits.values(), *folds.values()]:
        row["patients"] = len(row["patients"])
    for row in per_class.values():
        areas = row.pop("areas")
        row["mean_area_pct"] = statistics.fmean(areas) if areas else None
        row["median_area_pct"] = statistics.median(areas) if areas else None
    all_findings = sorted(
        {f for counter in findings.values() for f in counter}, key=lambda f: (-sum(c[f] for c in findings.values()), f)
    )
    series = [count for count in images_per_patient.values() if count > 1]
    return {
        "images": sum(s["images"] for s in splits.values()),
        "annotations": sum(s["annotations"] for s in splits.values()),
        "patients": len(images_per_patient),
        "patients_with_series": len(series),
        "images_in_series": sum(series),
        "largest_series": max(series, default=1),
        "splits": splits,
        "findings": {finding: {split: findings[split][finding] for split in recipe.SPLITS} for finding in all_findings},
        "classes": per_class,
        "licences": dict(sorted(licences.items(), key=lambda item: (-item[1], item[0]))),
        "folds": folds,
        "images_with_severity": scored,
    }
