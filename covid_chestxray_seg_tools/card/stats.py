"""Card statistics computed from the written Parquet files, so the card cannot disagree with them."""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = [
    "OVERLAP_CLASSES",
    "VIEW_HINTS",
    "CardStats",
    "ClassStats",
    "FlaggedImage",
    "FoldStats",
    "MetadataSummary",
    "OverlapStats",
    "SideStats",
    "SplitStats",
    "ViewConflict",
    "compute_stats",
    "view_hints",
]

# The classes of the overlap table: anatomy and opacities (devices cross everything).
OVERLAP_CLASSES = tuple(name for name, style in zip(recipe.CLASSES, recipe.CLASS_STYLES) if style != "line")
# Words in clinical_notes / other_notes that say a film is not PA: "AP" as written (an
# upper-case word), the others in any case.
VIEW_HINTS = re.compile(r"\bAP\b|\b(?i:supine|portable|mobile)\b")


class SplitStats(TypedDict):
    """A split's counts."""

    images: int
    patients: int
    annotations: int
    files: int  # Parquet files of the split, both licence parts


class FoldStats(TypedDict):
    """A fold's counts; `findings` counts 0 for a finding the fold lacks."""

    images: int
    patients: int
    findings: Counter[str]


class ClassStats(TypedDict):
    """A class's annotations, and its mask area in % of the image (None: no mask of it)."""

    instances: int
    images: int
    without_segmentation: int
    mean_area_pct: float | None
    median_area_pct: float | None


class OverlapStats(TypedDict):
    """Of the images where the class has a mask, the mean and the largest share (in %) of its
    pixels that are also another class's, by that class (None: the class never has a mask)."""

    images: int
    mean_pct: dict[str, float | None]
    max_pct: dict[str, float | None]


class SideStats(TypedDict):
    """A lung's annotations with a mask, and how many have their centroid on the expected side."""

    instances: int
    expected_side: int


class FlaggedImage(TypedDict):
    """An image with quality flags."""

    file_name: str
    split: str
    flags: list[str]


class ViewConflict(TypedDict):
    """An image whose `view` says PA while its notes say otherwise (`view_hints`)."""

    file_name: str
    split: str
    hints: list[str]


class MetadataSummary(TypedDict):
    """Values of sex, view and modality by count (the commonest first, "missing" last), and ages."""

    sex: dict[str, int]
    age_median: float | None
    age_min: int | None
    age_max: int | None
    age_known: int
    age_missing: int
    view: dict[str, int]
    modality: dict[str, int]


class _CardStatsFields(TypedDict):
    images: int
    annotations: int
    patients: int
    patients_with_series: int
    images_in_series: int
    largest_series: int
    splits: dict[str, SplitStats]
    findings: dict[str, dict[str, int]]  # finding -> split -> images, the commonest finding first
    classes: dict[str, ClassStats]
    licenses: dict[str, int]  # images per licence, the commonest first
    folds: dict[int, FoldStats]
    images_with_severity: int
    overlap: dict[str, OverlapStats]  # by the classes of OVERLAP_CLASSES
    overlapping_pairs: list[tuple[int, int]]  # class indices, wherever two masks share a pixel
    sides: dict[str, SideStats]
    quality_flags: list[FlaggedImage]
    view_conflicts: list[ViewConflict]
    metadata: MetadataSummary


class CardStats(_CardStatsFields, total=False):
    """What `compute_stats` counts, for the card; `build` adds `viewer_first_rows` (split ->
    rows the viewer's first page shows)."""

    viewer_first_rows: dict[str, int]


def view_hints(row: Mapping[str, Any]) -> list[str]:
    """The words of a row's clinical_notes and other_notes that say the film is not PA, in
    order and once each; [] when there are none."""
    text = " ".join(row.get(column) or "" for column in ("clinical_notes", "other_notes"))
    return list(dict.fromkeys(match.group(0) for match in VIEW_HINTS.finditer(text)))


def compute_stats(folder: Path) -> CardStats:
    """Counts per split, class, finding and licence, from the rows of the built folder; the
    class overlaps, the lung sides, the quality flags and a metadata summary.

    Mask areas and overlaps come from the RLE in `objects` (union per class and image), not
    from decoding the PNG masks: the same pixels, a hundred times cheaper.

    Args:
        folder: a built folder (`covid-seg build --out`).

    Returns:
        The counts, every mapping in the order the card shows it.
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
    instances: Counter[str] = Counter()
    class_images: Counter[str] = Counter()
    without_segmentation: Counter[str] = Counter()
    areas: dict[str, list[float]] = {name: [] for name in recipe.CLASSES}
    splits: dict[str, SplitStats] = {}
    split_patients: dict[str, set[Hashable]] = {}
    licenses: Counter[str] = Counter()
    findings: dict[str, Counter[str]] = {}
    images_per_patient: Counter[Hashable] = Counter()
    folds = {fold: FoldStats(images=0, patients=0, findings=Counter()) for fold in range(recipe.FOLDS)}
    fold_patients: dict[int, set[Hashable]] = {fold: set() for fold in range(recipe.FOLDS)}
    overlap_images: Counter[str] = Counter()
    shares: dict[str, dict[str, list[float]]] = {
        name: {other: [] for other in OVERLAP_CLASSES} for name in OVERLAP_CLASSES
    }
    overlapping_pairs: set[tuple[int, int]] = set()
    sides = {name: SideStats(instances=0, expected_side=0) for name in recipe.EXPECTED_SIDE}
    metadata = _MetadataCounts()
    flagged: list[FlaggedImage] = []
    view_conflicts: list[ViewConflict] = []
    scored = 0
    for split in recipe.SPLITS:
        splits[split] = SplitStats(images=0, patients=0, annotations=0, files=len(layout.shard_paths(folder, split)))
        split_patients[split] = set()
        findings[split] = Counter()
        for row in layout.iter_rows(folder, split, columns=columns):
            splits[split]["images"] += 1
            split_patients[split].add(row["patient_id"])
            splits[split]["annotations"] += len(row["objects"])
            findings[split][row["finding"] or "none given"] += 1
            images_per_patient[row["patient_id"]] += 1
            licenses[row["license"] or "none given"] += 1
            scored += row["severity_geographic_extent"] is not None
            if row["fold"] is not None:
                folds[row["fold"]]["images"] += 1
                fold_patients[row["fold"]].add(row["patient_id"])
                folds[row["fold"]]["findings"][row["finding"] or "none given"] += 1
            metadata.count(row)
            if row["quality_flags"]:
                flagged.append(FlaggedImage(file_name=row["file_name"], split=split, flags=list(row["quality_flags"])))
            hints = view_hints(row)
            if hints and row["view"] == "PA":
                view_conflicts.append(ViewConflict(file_name=row["file_name"], split=split, hints=hints))
            by_class: dict[str, list[dict[str, Any] | None]] = {}
            for obj in row["objects"]:
                name = recipe.CLASSES[obj["category"]]
                instances[name] += 1
                without_segmentation[name] += obj["segmentation"] is None
                by_class.setdefault(name, []).append(obj["segmentation"])
                if name in sides and obj["segmentation"] is not None:
                    centroid = recipe.rle_centroid_x(obj["segmentation"])
                    on_right = centroid is not None and centroid > row["width"] / 2
                    sides[name]["instances"] += 1
                    sides[name]["expected_side"] += on_right == (recipe.EXPECTED_SIDE[name] == "right")
            unions = {}
            for name, segmentations in by_class.items():
                class_images[name] += 1
                present = [seg for seg in segmentations if seg is not None]
                if len(present) == len(segmentations):
                    unions[name] = recipe.union_rle(present)
                    area = float(mask_utils.area(unions[name]))
                    areas[name].append(100.0 * area / (row["width"] * row["height"]))
            _count_overlaps(unions, images=overlap_images, shares=shares, pairs=overlapping_pairs)
    for split, patients in split_patients.items():
        splits[split]["patients"] = len(patients)
    for fold, patients in fold_patients.items():
        folds[fold]["patients"] = len(patients)
    all_findings = sorted(
        {f for counter in findings.values() for f in counter}, key=lambda f: (-sum(c[f] for c in findings.values()), f)
    )
    series = [count for count in images_per_patient.values() if count > 1]
    return CardStats(
        images=sum(s["images"] for s in splits.values()),
        annotations=sum(s["annotations"] for s in splits.values()),
        patients=len(images_per_patient),
        patients_with_series=len(series),
        images_in_series=sum(series),
        largest_series=max(series, default=1),
        splits=splits,
        findings={finding: {split: findings[split][finding] for split in recipe.SPLITS} for finding in all_findings},
        classes={
            name: ClassStats(
                instances=instances[name],
                images=class_images[name],
                without_segmentation=without_segmentation[name],
                mean_area_pct=statistics.fmean(areas[name]) if areas[name] else None,
                median_area_pct=statistics.median(areas[name]) if areas[name] else None,
            )
            for name in recipe.CLASSES
        },
        licenses=dict(sorted(licenses.items(), key=lambda item: (-item[1], item[0]))),
        folds=folds,
        images_with_severity=scored,
        overlap={
            name: OverlapStats(
                images=overlap_images[name],
                mean_pct={
                    other: 100 * statistics.fmean(values) if values else None for other, values in shares[name].items()
                },
                max_pct={other: 100 * max(values) if values else None for other, values in shares[name].items()},
            )
            for name in OVERLAP_CLASSES
        },
        overlapping_pairs=sorted(overlapping_pairs),
        sides=sides,
        quality_flags=sorted(flagged, key=lambda row: row["file_name"]),
        view_conflicts=sorted(view_conflicts, key=lambda row: row["file_name"]),
        metadata=metadata.summary(),
    )


def _count_overlaps(
    unions: dict[str, dict[str, Any]],
    *,
    images: Counter[str],
    shares: dict[str, dict[str, list[float]]],
    pairs: set[tuple[int, int]],
) -> None:
    # Each unordered pair's intersection once: the share of A in B and of B in A both use it.
    areas = {name: float(mask_utils.area(rle)) for name, rle in unions.items()}
    for name in OVERLAP_CLASSES:
        if areas.get(name):
            images[name] += 1
    for first, second in itertools.combinations(sorted(unions, key=recipe.CLASSES.index), 2):
        if not areas[first] or not areas[second]:
            continue
        shared = float(mask_utils.area(mask_utils.merge([unions[first], unions[second]], intersect=True)))
        if shared:
            pairs.add((recipe.CLASSES.index(first), recipe.CLASSES.index(second)))
        if first in shares and second in shares:
            shares[first][second].append(shared / areas[first])
            shares[second][first].append(shared / areas[second])
    # A class absent from the image shares nothing with one that is there: a 0 in its mean.
    for name in OVERLAP_CLASSES:
        if areas.get(name):
            for other in OVERLAP_CLASSES:
                if other != name and not areas.get(other):
                    shares[name][other].append(0.0)


@dataclass
class _MetadataCounts:
    sex: Counter[str] = field(default_factory=Counter)
    ages: list[int] = field(default_factory=list)
    age_missing: int = 0
    view: Counter[str] = field(default_factory=Counter)
    modality: Counter[str] = field(default_factory=Counter)

    def count(self, row: dict[str, Any]) -> None:
        self.sex[row["sex"] or "missing"] += 1
        if row["age"] is None:
            self.age_missing += 1
        else:
            self.ages.append(row["age"])
        self.view[row["view"] or "missing"] += 1
        self.modality[row["modality"] or "missing"] += 1

    def summary(self) -> MetadataSummary:
        def ordered(counter: Counter[str]) -> dict[str, int]:
            # The commonest first; "missing" last whatever its count.
            return dict(sorted(counter.items(), key=lambda item: (item[0] == "missing", -item[1], item[0])))

        return MetadataSummary(
            sex=ordered(self.sex),
            age_median=statistics.median(self.ages) if self.ages else None,
            age_min=min(self.ages, default=None),
            age_max=max(self.ages, default=None),
            age_known=len(self.ages),
            age_missing=self.age_missing,
            view=ordered(self.view),
            modality=ordered(self.modality),
        )
