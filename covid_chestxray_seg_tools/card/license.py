"""LICENSE.md, published beside the data: what each part of a record is licensed under.

The card's YAML says `license: other` and links here (`license_link`), so the Hub shows
a licence people can act on: annotations, images and severity scores each have their own.
"""

from __future__ import annotations

import datasets

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.card.stats import CardStats
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = ["license_table", "licensed_config_text", "render_license"]

_UNKNOWN_LICENSE = "none given"


def license_table(stats: CardStats) -> str:
    """Images per licence, with what each licence allows, from the built files: the table the
    card and LICENSE.md both show."""

    def allowed(value: bool, *, share_alike: bool = False) -> str:
        return ("yes, under the same licence" if share_alike else "yes") if value else "**no**"

    rows = []
    for name, count in stats["licenses"].items():
        terms = recipe.IMAGE_LICENSE_TERMS.get(name)
        if name == _UNKNOWN_LICENSE:
            commercial = derivatives = "unknown: no licence is granted; ask the source"
        elif terms is None:
            commercial = derivatives = "not known to this card: read the licence"
        else:
            commercial = allowed(terms.commercial)
            derivatives = allowed(terms.derivatives, share_alike=terms.share_alike)
        rows.append(f"| {name} | {count} | {commercial} | {derivatives} |")
    return "\n".join(
        [
            "| image licence (`license` column) | images | commercial use | derivatives (adapted copies) |",
            "|---|---:|---|---|",
            *rows,
        ]
    )


def licensed_config_text(stats: CardStats) -> str:
    """What the `licensed` config's licences allow, counted: which share forbids commercial use."""
    known = {name: count for name, count in stats["licenses"].items() if name != _UNKNOWN_LICENSE}
    total = sum(known.values())
    non_commercial = {
        name: count
        for name, count in known.items()
        if name in recipe.IMAGE_LICENSE_TERMS and not recipe.IMAGE_LICENSE_TERMS[name].commercial
    }
    counted = ", ".join(f"{count} {name}" for name, count in known.items())
    config = f"`{layout.LICENSED_CONFIG}`"
    if not total:
        return f"{config} is empty: no image has a known licence."
    barred = sum(non_commercial.values())
    if not barred:
        return f"{config} ({counted}) allows commercial use of every image it holds."
    if barred == total:
        return f"{config} is **non-commercial**: every image's licence forbids commercial use ({counted})."
    return (
        f"{config} is {'**mostly non-commercial**' if 2 * barred > total else 'partly non-commercial'}: "
        f"{barred} of its {total} images carry a licence that forbids commercial use ({counted}). "
        "Filter on `license` if you need commercial use."
    )


def render_license(stats: CardStats, infos: dict[str, datasets.DatasetInfo]) -> str:
    """The licence file's text; the image counts come from the built files."""
    known = sum(split.num_examples for split in infos[layout.LICENSED_CONFIG].splits.values())
    return f"""# Licences of COVID-19 Chest X-ray Segmentations

Each record combines material under different licences.

## Annotations: {recipe.ANNOTATIONS_LICENSE}

The segmentations (the `mask_*` columns, `objects` and the `overlay` drawing of them) are
GeneralBlockchain's, licensed under the Creative Commons Attribution 4.0 International
licence (https://creativecommons.org/licenses/by/4.0/). Source: {recipe.HOMEPAGE}
(commit `{recipe.UPSTREAM_COMMIT}`).

## Images: each image's own licence

The X-rays (the `image` column, and the `overlay` as a picture of it) come from public case
reports and papers collected by the ieee8023 COVID-19 image data collection. Each keeps the
licence of its source, given in the record's `license` column; `url` and `doi` name the source.

{license_table(stats)}

"none given" means that upstream names no licence for the image: its `license` is null. No
licence is granted for such an image by this dataset. Check its source (`url`, `doi`) before
you copy, publish or redistribute it. The `{layout.LICENSED_CONFIG}` config holds only the
{known} images whose licence is known, so that a copy of it can follow the stated terms.

## Severity scores: {recipe.SEVERITY_LICENSE}

`severity_geographic_extent` and `severity_opacity` are the ieee8023 expert severity scores
({recipe.SEVERITY_HOMEPAGE}, `{recipe.SEVERITY_PATH}` at commit `{recipe.SEVERITY_COMMIT}`), licensed
under Creative Commons Attribution-ShareAlike 4.0 (https://creativecommons.org/licenses/by-sa/4.0/).
Cite: Joseph Paul Cohen et al., "Predicting COVID-19 Pneumonia Severity on Chest X-ray with Deep
Learning", 2020, arXiv 2005.11856.

## Metadata

The other columns (patient, clinical and source fields) are the ieee8023 collection's
`metadata.csv` as GeneralBlockchain redistributes it.

Not for clinical use.
"""
