"""Card statistics computed from the written Parquet files, so the card cannot disagree with them."""

from __future__ import annotations

import itertools
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from pycocotools import mask as mask_utils

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = [
    "OVERLAP_CLASSES",
    "VIEW_HINTS",
    "CardStats",
    "ClassFacts",
    "ClassStats",
    "FlaggedImage",
    "FoldStats",
    "ImageFacts",
    "MetadataSummary",
    "OverlapStats",
    "SideStats",
    "SplitStats",
    "ViewConflict",
    "compute_stats",
    "image_facts",
    "summarise",
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
    """The words of a row's clinical_notes and other_notes that say the film is not PA.

    Args:
        row: a row with `clinical_notes` and `other_notes` (either may be missing or null).

    Returns:
        The words, in order and once each; [] when there are none.
    """
    text = " ".join(row.get(column) or "" for column in ("clinical_notes", "other_notes"))
    return list(dict.fromkeys(match.group(0) for match in VIEW_HINTS.finditer(text)))


# The columns the per-image pass reads: no image or mask bytes.
_COLUMNS = (
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
)
# What the card calls a finding or licence upstream leaves empty, and a missing metadata value.
_NONE_GIVEN, _MISSING = "none given", "missing"


@dataclass(frozen=True)
class ClassFacts:
    """One class on one image.

    Attributes:
        instances: its annotations.
        without_segmentation: those of them with no mask upstream.
        area_pct: the area of their union in % of the image; None when one has no mask.
    """

    instances: int
    without_segmentation: int
    area_pct: float | None


@dataclass(frozen=True)
class ImageFacts:
    """What the card counts of one image, as plain values (`image_facts`); `summarise` adds them up.

    Attributes:
        file_name, split, patient, fold: the row's, `fold` None outside the folds.
        finding, license: the row's, "none given" when null.
        severity_scored: whether the row has ieee8023's geographic-extent score.
        annotations: the row's annotations (`objects`).
        sex, view, modality: the row's, "missing" when null; `age` None when null.
        quality_flags: the row's `quality_flags`.
        view_conflict: the notes' words that contradict `view` when it says PA (`view_hints`); () otherwise.
        classes: each class annotated on the image, in the order of `objects`.
        sides: per lung of `recipe.EXPECTED_SIDE`, whether each of its annotations with a mask has its
            centroid on the expected side.
        overlap: per class of OVERLAP_CLASSES with pixels on the image, the share (0-1) of its pixels
            that are also each other class's (0 for a class absent from the image).
        overlapping_pairs: the class indices (lower first) of every two classes that share a pixel.
    """

    file_name: str
    split: str
    patient: int | None
    fold: int | None
    finding: str
    license: str
    severity_scored: bool
    annotations: int
    sex: str
    age: int | None
    view: str
    modality: str
    quality_flags: tuple[str, ...]
    view_conflict: tuple[str, ...]
    classes: Mapping[str, ClassFacts]
    sides: Mapping[str, tuple[bool, ...]]
    overlap: Mapping[str, Mapping[str, float]]
    overlapping_pairs: tuple[tuple[int, int], ...]


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
    facts = (
        image_facts(row, split=split)
        for split in recipe.SPLITS
        for row in layout.iter_rows(folder, split, columns=_COLUMNS)
    )
    files = {split: len(layout.shard_paths(folder, split)) for split in recipe.SPLITS}
    return summarise(facts, files=files)


def image_facts(row: Mapping[str, Any], *, split: str) -> ImageFacts:
    """The per-image pass: what the card counts of one stored row, from its RLE (no PNG decoded).

    Args:
        row: a stored row with at least the columns `compute_stats` reads (file_name, patient_id,
            license, finding, width, height, objects, fold, severity_geographic_extent, sex, age,
            view, modality, clinical_notes, other_notes, quality_flags).
        split: the split the row is in.

    Returns:
        The image's facts.
    """
    by_class: dict[str, list[dict[str, Any] | None]] = {}
    for obj in row["objects"]:
        by_class.setdefault(recipe.CLASSES[obj["category"]], []).append(obj["segmentation"])
    # A class's mask is the union of its annotations, and has no area when one of them has no mask.
    unions = {}
    for name, segmentations in by_class.items():
        present = [segmentation for segmentation in segmentations if segmentation is not None]
        if len(present) == len(segmentations):
            unions[name] = recipe.union_rle(present)
    areas = {name: float(mask_utils.area(rle)) for name, rle in unions.items()}
    overlap, pairs = _overlaps(unions, areas)
    hints = view_hints(row)
    return ImageFacts(
        file_name=row["file_name"],
        split=split,
        patient=row["patient_id"],
        fold=row["fold"],
        finding=row["finding"] or _NONE_GIVEN,
        license=row["license"] or _NONE_GIVEN,
        severity_scored=row["severity_geographic_extent"] is not None,
        annotations=len(row["objects"]),
        sex=row["sex"] or _MISSING,
        age=row["age"],
        view=row["view"] or _MISSING,
        modality=row["modality"] or _MISSING,
        quality_flags=tuple(row["quality_flags"] or ()),
        view_conflict=tuple(hints) if row["view"] == "PA" else (),
        classes={
            name: ClassFacts(
                instances=len(segmentations),
                without_segmentation=sum(segmentation is None for segmentation in segmentations),
                area_pct=100.0 * areas[name] / (row["width"] * row["height"]) if name in areas else None,
            )
            for name, segmentations in by_class.items()
        },
        sides={
            name: tuple(
                _on_expected_side(segmentation, name, width=row["width"])
                for segmentation in by_class.get(name, [])
                if segmentation is not None
            )
            for name in recipe.EXPECTED_SIDE
        },
        overlap=overlap,
        overlapping_pairs=pairs,
    )


def _on_expected_side(segmentation: dict[str, Any], name: str, *, width: int) -> bool:
    centroid = recipe.rle_centroid_x(segmentation)
    on_right = centroid is not None and centroid > width / 2
    return on_right == (recipe.EXPECTED_SIDE[name] == "right")


def _overlaps(
    unions: Mapping[str, dict[str, Any]], areas: Mapping[str, float]
) -> tuple[dict[str, dict[str, float]], tuple[tuple[int, int], ...]]:
    # Each unordered pair's intersection once: the share of A in B and of B in A both use it.
    drawn = sorted((name for name in unions if areas[name]), key=recipe.CLASSES.index)
    shared: dict[tuple[str, str], float] = {}
    pairs = []
    for first, second in itertools.combinations(drawn, 2):
        common = float(mask_utils.area(mask_utils.merge([unions[first], unions[second]], intersect=True)))
        shared[first, second] = shared[second, first] = common
        if common:
            pairs.append((recipe.CLASSES.index(first), recipe.CLASSES.index(second)))
    # A class absent from the image shares nothing with one that is there: a 0 in its mean.
    shares = {
        name: {other: shared.get((name, other), 0.0) / areas[name] for other in OVERLAP_CLASSES if other != name}
        for name in OVERLAP_CLASSES
        if areas.get(name)
    }
    return shares, tuple(pairs)


def summarise(facts: Iterable[ImageFacts], *, files: Mapping[str, int]) -> CardStats:
    """The card's statistics from the facts of every image (`image_facts`), in the order read.

    Args:
        facts: the images' facts, split by split in the order of `recipe.SPLITS`.
        files: the Parquet files of each split of `recipe.SPLITS`, both licence parts.

    Returns:
        The counts, every mapping in the order the card shows it (`compute_stats`).
    """
    images = list(facts)
    per_patient = Counter(image.patient for image in images)
    series = [count for count in per_patient.values() if count > 1]
    licenses = Counter(image.license for image in images)
    pairs = {pair for image in images for pair in image.overlapping_pairs}
    return CardStats(
        images=len(images),
        annotations=sum(image.annotations for image in images),
        patients=len(per_patient),
        patients_with_series=len(series),
        images_in_series=sum(series),
        largest_series=max(series, default=1),
        splits={
            split: _split_stats([i for i in images if i.split == split], files=files[split]) for split in recipe.SPLITS
        },
        findings=_findings(images),
        classes={name: _class_stats([i.classes[name] for i in images if name in i.classes]) for name in recipe.CLASSES},
        licenses=dict(sorted(licenses.items(), key=lambda item: (-item[1], item[0]))),
        folds={fold: _fold_stats([i for i in images if i.fold == fold]) for fold in range(recipe.FOLDS)},
        images_with_severity=sum(image.severity_scored for image in images),
        overlap={
            name: _overlap_stats(name, [i.overlap[name] for i in images if name in i.overlap])
            for name in OVERLAP_CLASSES
        },
        overlapping_pairs=sorted(pairs),
        sides={name: _side_stats([i.sides.get(name, ()) for i in images]) for name in recipe.EXPECTED_SIDE},
        quality_flags=_flagged_images(images),
        view_conflicts=_view_conflicts(images),
        metadata=_metadata_summary(images),
    )


def _split_stats(images: list[ImageFacts], *, files: int) -> SplitStats:
    return SplitStats(
        images=len(images),
        patients=len({image.patient for image in images}),
        annotations=sum(image.annotations for image in images),
        files=files,
    )


def _findings(images: list[ImageFacts]) -> dict[str, dict[str, int]]:
    # finding -> split -> images, the commonest finding first (then by name).
    totals = Counter(image.finding for image in images)
    by_split = Counter((image.finding, image.split) for image in images)
    order = sorted(totals, key=lambda finding: (-totals[finding], finding))
    return {finding: {split: by_split[finding, split] for split in recipe.SPLITS} for finding in order}


def _class_stats(on_images: list[ClassFacts]) -> ClassStats:
    areas = [of_image.area_pct for of_image in on_images if of_image.area_pct is not None]
    return ClassStats(
        instances=sum(of_image.instances for of_image in on_images),
        images=len(on_images),
        without_segmentation=sum(of_image.without_segmentation for of_image in on_images),
        mean_area_pct=statistics.fmean(areas) if areas else None,
        median_area_pct=statistics.median(areas) if areas else None,
    )


def _fold_stats(images: list[ImageFacts]) -> FoldStats:
    return FoldStats(
        images=len(images),
        patients=len({image.patient for image in images}),
        findings=Counter(image.finding for image in images),
    )


def _overlap_stats(name: str, shares: list[Mapping[str, float]]) -> OverlapStats:
    # A class has no share of itself: its own column stays None, as a class never drawn does.
    values = {other: [share[other] for share in shares] if other != name else [] for other in OVERLAP_CLASSES}
    return OverlapStats(
        images=len(shares),
        mean_pct={other: 100 * statistics.fmean(of) if of else None for other, of in values.items()},
        max_pct={other: 100 * max(of) if of else None for other, of in values.items()},
    )


def _side_stats(on_images: list[tuple[bool, ...]]) -> SideStats:
    return SideStats(
        instances=sum(len(of_image) for of_image in on_images),
        expected_side=sum(sum(of_image) for of_image in on_images),
    )


def _flagged_images(images: list[ImageFacts]) -> list[FlaggedImage]:
    flagged = [
        FlaggedImage(file_name=image.file_name, split=image.split, flags=list(image.quality_flags))
        for image in images
        if image.quality_flags
    ]
    return sorted(flagged, key=lambda row: row["file_name"])


def _view_conflicts(images: list[ImageFacts]) -> list[ViewConflict]:
    conflicts = [
        ViewConflict(file_name=image.file_name, split=image.split, hints=list(image.view_conflict))
        for image in images
        if image.view_conflict
    ]
    return sorted(conflicts, key=lambda row: row["file_name"])


def _metadata_summary(images: list[ImageFacts]) -> MetadataSummary:
    def ordered(counter: Counter[str]) -> dict[str, int]:
        # The commonest first; "missing" last whatever its count.
        return dict(sorted(counter.items(), key=lambda item: (item[0] == _MISSING, -item[1], item[0])))

    ages = [image.age for image in images if image.age is not None]
    return MetadataSummary(
        sex=ordered(Counter(image.sex for image in images)),
        age_median=statistics.median(ages) if ages else None,
        age_min=min(ages, default=None),
        age_max=max(ages, default=None),
        age_known=len(ages),
        age_missing=len(images) - len(ages),
        view=ordered(Counter(image.view for image in images)),
        modality=ordered(Counter(image.modality for image in images)),
    )
