"""The card's class semantics: independent masks that overlap (the overlap table), and which
side "Left Lung" is (backed by the build's centroid check)."""

from __future__ import annotations

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.stats import OVERLAP_CLASSES

__all__ = ["overlap_table", "sides_text"]


def overlap_table(overlap: dict) -> str:
    """The mean share of class A's pixels (row) that are also class B's (column), over the
    images where A has a mask, with the largest share on one image in parentheses (card.stats'
    `overlap`)."""

    def cell(row: dict, other: str) -> str:
        mean, largest = row["mean_pct"][other], row["max_pct"][other]
        if mean is None:
            return "n/a"
        return f"{mean:.1f} ({largest:.1f})" if largest else "0"

    lines = [
        "| % of A that is also B | images with A | " + " | ".join(OVERLAP_CLASSES) + " |",
        "|---|---:|" + "---:|" * len(OVERLAP_CLASSES),
    ]
    for name in OVERLAP_CLASSES:
        row = overlap[name]
        cells = ["" if other == name else cell(row, other) for other in OVERLAP_CLASSES]
        lines.append(f"| {name} | {row['images']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def sides_text(sides: dict) -> str:
    """The side convention, with the count of lung annotations on their expected side."""
    checked = ", ".join(
        f"{row['expected_side']} of {row['instances']} {name} annotations have their centroid in the image's "
        f"{recipe.EXPECTED_SIDE[name]} half"
        for name, row in sides.items()
    )
    return (
        "\"Left Lung\" is the patient's left lung, which a PA or AP film shows on the **image's right**; "
        '"Right Lung" is on the image\'s left. The build checks it on every image (a lung on the wrong side is '
        f"flagged `wrong_side:<mask column>`): {checked}. A left-right flip augmentation must therefore swap "
        "`mask_left_lung` and `mask_right_lung`."
    )
