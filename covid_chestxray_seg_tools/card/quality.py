"""The card's Known issues: the images the build flagged, what each flag means for training
and for scoring, and the metadata that contradicts itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.stats import CardStats, FlaggedImage, ViewConflict

__all__ = ["FLAG_MEANINGS", "FlagMeaning", "flagged_images_text", "known_issues_text", "view_conflicts_text"]


@dataclass(frozen=True)
class FlagMeaning:
    """What a kind of quality flag says, and what to do about it."""

    problem: str
    training: str
    scoring: str


FLAG_MEANINGS = {
    "missing": FlagMeaning(
        problem="the class is on the film but not annotated: its mask is all-zero by omission, not because "
        "the structure is absent",
        training="do not teach the model that the structure is absent: leave this class out of the loss on this "
        "image (or leave the image out)",
        scoring="the pair is skipped and counted, as a null mask is: a model that finds the structure "
        "would otherwise score Dice 0",
    ),
    "duplicate": FlagMeaning(
        problem="the class is annotated more than once where one instance is expected: its mask is the union of "
        "the annotations, and `objects` holds each",
        training="the union is usable as the class mask; use `objects` if you train instances",
        scoring="scored as stored (the union)",
    ),
    "wrong_side": FlagMeaning(
        problem="a lung annotation's centroid lies in the half of the image where the other lung belongs: "
        "probably left and right swapped",
        training="swap or drop the two lung masks before training, and before any left-right flip augmentation",
        scoring="scored as stored; treat that image's lung scores with care",
    ),
}


def flagged_images_text(flagged: Sequence[FlaggedImage]) -> str:
    """The Known-issues lines for the flagged images (card.stats' `quality_flags`), one table
    row per flag, and what each kind of flag means."""
    if not flagged:
        return "- No image carries a quality flag: every expected structure is annotated once, on its side."
    lines = [
        f"- {len(flagged)} images carry `quality_flags` (computed by the build: each of "
        + ", ".join(recipe.EXPECTED_CLASSES)
        + " is expected once per image, a Left Lung on the image's right half and a Right Lung on its left):",
        "",
        "  | image | split | flag |",
        "  |---|---|---|",
    ]
    for row in flagged:
        for flag in row["flags"]:
            lines.append(f"  | `{row['file_name']}` | {row['split']} | `{flag}` |")
    lines.append("")
    kinds = sorted(
        {recipe.parse_quality_flag(flag)[0] for row in flagged for flag in row["flags"]},
        key=recipe.QUALITY_FLAG_KINDS.index,
    )
    for kind in kinds:
        meaning = FLAG_MEANINGS[kind]
        lines.append(
            f"  - `{kind}:<mask column>`: {meaning.problem}. Training: {meaning.training}. Scoring: {meaning.scoring}."
        )
    return "\n".join(lines)


def view_conflicts_text(conflicts: Sequence[ViewConflict], *, images: int) -> str:
    """The Known-issues line for rows whose notes say AP, supine, portable or mobile while
    `view` says PA (card.stats' `view_conflicts`)."""
    if not conflicts:
        return f"- No row's `clinical_notes` or `other_notes` contradicts its `view` (of {images} images)."
    listed = "; ".join(
        f"`{row['file_name']}` ({row['split']}: " + ", ".join(f'"{hint}"' for hint in row["hints"]) + ")"
        for row in conflicts
    )
    return (
        f"- `view` says PA, but the notes say otherwise, on {len(conflicts)} of {images} images: {listed}. "
        "Upstream's `view` is what the source stated; a supine or portable (mobile) film is usually AP, which "
        "magnifies the heart. Burnt-in text on other films (such as PORTABLE) is not checked."
    )


def known_issues_text(stats: CardStats, report: recipe.BuildReport) -> str:
    """The card's Known-issues list: the flagged images, the metadata that contradicts itself, and
    the upstream quirks the build handled (annotations without a mask, renamed categories, images
    without a licence, series of one patient).

    Args:
        stats: the built files' counts (`card.stats.compute_stats`).
        report: what the build read and the upstream quirks it handled.

    Returns:
        The list, one Markdown item per issue.
    """
    renamed = ", ".join(f"`{old}` -> `{new}`" for old, new in report.renamed_categories.items()) or "none"
    return "\n".join(
        [
            flagged_images_text(stats["quality_flags"]),
            view_conflicts_text(stats["view_conflicts"], images=stats["images"]),
            f"- {report.annotations_without_segmentation} annotations have no segmentation upstream: they are kept "
            "in `objects` with a null `segmentation`, and their class mask is null on that image.",
            f"- Renamed upstream categories: {renamed}.",
            f"- {report.images_without_license} images have no licence in `{recipe.METADATA_FILE}`: "
            "their `license` is null.",
            f"- {stats['patients_with_series']} patients have a series of images ({stats['images_in_series']} "
            f"images, up to {stats['largest_series']} for one patient): the splits keep each series together.",
        ]
    )
