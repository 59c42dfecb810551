"""Card statistics computed from the written Parquet files, so the card cannot disagree with them."""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter
from pathlib import Path

from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools import layout

__all__ = ["OVERLAP_CLASSES", "VIEW_HINTS", "compute_stats", "view_hints"]

# The classes of the overlap table: anatomy and opacities (devices cross everything).
OVERLAP_CLASSES = tuple(name for name, style in zip(recipe.CLASSES, recipe.CLASS_STYLES) if style != "line")
# Words in clinical_notes / other_notes that say a film is not PA: "AP" as written (an
# upper-case word), the others in any case.
VIEW_HINTS = re.compile(r"\bAP\b|\b(?i:supine|portable|mobile)\b")


def view_hints(row: dict) -> list[str]:
    """The words of a row's clinical_notes and other_notes that say the film is not PA, in
    order and once each; [] when there are none."""
    text = " ".join(row.get(column) or "" for column in ("clinical_notes", "other_notes"))
    return list(dict.fromkeys(match.group(0) for match in VIEW_HINTS.finditer(text)))


def compute_stats(folder: Path) -> dict:
    """Counts per split, class, finding and licence, from the rows of the built folder; the
    class overlaps, the lung sides, the quality flags and a metadata summary.

    Mask areas and overlaps come from the RLE in `objects` (union per class and image), not
    from decoding the PNG masks: the same pixels, a hundred times cheaper.
    """
    columns = [
        "image_id",
        "file_name",
        "patient_id",
        "license",
        "finding",
        "width",
        "height",
        "objects",
        "fold",
        "severity_geographic_extent",
        "sex",
        "age",
        "view",
        "modality",
        "clinical_notes",
        "other_notes",
        "quality_flags",
    ]
    per_class = {name: {"instances": 0, "images": 0, "without_segmentation": 0, "areas": []} for name in recipe.CLASSES}
    splits, licences, findings, images_per_patient = {}, Counter(), {}, Counter()
    folds = {fold: {"images": 0, "patients": set(), "findings": Counter()} for fold in range(recipe.FOLDS)}
    overlap = {name: {"images": 0, "shares": {other: [] for other in OVERLAP_CLASSES}} for name in OVERLAP_CLASSES}
    overlapping_pairs: set[tuple[int, int]] = set()
    sides = {name: {"instances": 0, "expected_side": 0} for name in recipe.EXPECTED_SIDE}
    metadata = {"sex": Counter(), "ages": [], "age_missing": 0, "view": Counter(), "modality": Counter()}
    flagged, view_conflicts = [], []
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
            _count_metadata(row, metadata)
            if row["quality_flags"]:
                flagged.append({"file_name": row["file_name"], "split": split, "flags": list(row["quality_flags"])})
            hints = view_hints(row)
            if hints and row["view"] == "PA":
                view_conflicts.append({"file_name": row["file_name"], "split": split, "hints": hints})
            by_class: dict[str, list] = {}
            for obj in row["objects"]:
                name = recipe.CLASSES[obj["category"]]
                per_class[name]["instances"] += 1
                per_class[name]["without_segmentation"] += obj["segmentation"] is None
                by_class.setdefault(name, []).append(obj["segmentation"])
                if name in sides and obj["segmentation"] is not None:
                    centroid = recipe.rle_centroid_x(obj["segmentation"])
                    on_right = centroid is not None and centroid > row["width"] / 2
                    sides[name]["instances"] += 1
                    sides[name]["expected_side"] += on_right == (recipe.EXPECTED_SIDE[name] == "right")
            unions = {}
            for name, segmentations in by_class.items():
                per_class[name]["images"] += 1
                if all(seg is not None for seg in segmentations):
                    unions[name] = recipe.union_rle(segmentations)
                    area = float(mask_utils.area(unions[name]))
                    per_class[name]["areas"].append(100.0 * area / (row["width"] * row["height"]))
            _count_overlaps(unions, overlap, overlapping_pairs)
    for row in [*splits.values(), *folds.values()]:
        row["patients"] = len(row["patients"])
    for row in per_class.values():
        areas = row.pop("areas")
        row["mean_area_pct"] = statistics.fmean(areas) if areas else None
        row["median_area_pct"] = statistics.median(areas) if areas else None
    for row in overlap.values():
        shares = row.pop("shares")
        row["mean_pct"] = {
            other: 100 * statistics.fmean(values) if values else None for other, values in shares.items()
        }
        row["max_pct"] = {other: 100 * max(values) if values else None for other, values in shares.items()}
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
        "overlap": overlap,
        "overlapping_pairs": sorted(overlapping_pairs),
        "sides": sides,
        "quality_flags": sorted(flagged, key=lambda row: row["file_name"]),
        "view_conflicts": sorted(view_conflicts, key=lambda row: row["file_name"]),
        "metadata": _summarise_metadata(metadata),
    }


def _count_overlaps(unions: dict[str, dict], overlap: dict, pairs: set[tuple[int, int]]) -> None:
    # Each unordered pair's intersection once: the share of A in B and of B in A both use it.
    areas = {name: float(mask_utils.area(rle)) for name, rle in unions.items()}
    for name in OVERLAP_CLASSES:
        if areas.get(name):
            overlap[name]["images"] += 1
    for first, second in itertools.combinations(sorted(unions, key=recipe.CLASSES.index), 2):
        if not areas[first] or not areas[second]:
            continue
        shared = float(mask_utils.area(mask_utils.merge([unions[first], unions[second]], intersect=True)))
        if shared:
            pairs.add((recipe.CLASSES.index(first), recipe.CLASSES.index(second)))
        if first in overlap and second in overlap:
            overlap[first]["shares"][second].append(shared / areas[first])
            overlap[second]["shares"][first].append(shared / areas[second])
    # A class absent from the image shares nothing with one that is there: a 0 in its mean.
    for name in OVERLAP_CLASSES:
        if areas.get(name):
            for other in OVERLAP_CLASSES:
                if other != name and not areas.get(other):
                    overlap[name]["shares"][other].append(0.0)


def _count_metadata(row: dict, metadata: dict) -> None:
    metadata["sex"][row["sex"] or "missing"] += 1
    if row["age"] is None:
        metadata["age_missing"] += 1
    else:
        metadata["ages"].append(row["age"])
    metadata["view"][row["view"] or "missing"] += 1
    metadata["modality"][row["modality"] or "missing"] += 1


def _summarise_metadata(metadata: dict) -> dict:
    ages = metadata["ages"]

    def ordered(counter: Counter) -> dict[str, int]:
        # The commonest first; "missing" last whatever its count.
        return dict(sorted(counter.items(), key=lambda item: (item[0] == "missing", -item[1], item[0])))

    return {
        "sex": ordered(metadata["sex"]),
        "age_median": statistics.median(ages) if ages else None,
        "age_min": min(ages, default=None),
        "age_max": max(ages, default=None),
        "age_known": len(ages),
        "age_missing": metadata["age_missing"],
        "view": ordered(metadata["view"]),
        "modality": ordered(metadata["modality"]),
    }
