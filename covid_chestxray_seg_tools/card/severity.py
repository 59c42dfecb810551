"""Masks against expert severity: how much of the lung fields the lesion masks cover, per
image, and how that ranks against ieee8023's geographic-extent score."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypedDict

from pycocotools import mask as mask_utils
from scipy import stats as scipy_stats

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = ["SEVERITY_PLOT_PATH", "SeverityCorrelation", "lesion_shares", "render_severity_plot", "severity_correlation"]

_LUNGS = recipe.LUNG_CLASSES
_LESIONS = recipe.OPACITY_CLASSES
SEVERITY_PLOT_PATH = "assets/severity.png"


class SeverityCorrelation(TypedDict):
    """Spearman's rho of the lesion share against the geographic-extent score and its p-value,
    over `n` scored images (None and None under 3)."""

    n: int
    rho: float | None
    p: float | None


def lesion_shares(folder: Path) -> list[dict[str, Any]]:
    """Per image with both lung masks: the share of the lung fields (left + right) covered by
    ground-glass opacity or consolidation, with the image's severity scores (None if unscored).
    From the RLE in `objects`, so no PNG is decoded."""
    columns = ["image_id", "file_name", "objects", *(column for column, _ in recipe.SEVERITY_COLUMNS.values())]
    lung_ids = {recipe.CLASSES.index(name) for name in _LUNGS}
    lesion_ids = {recipe.CLASSES.index(name) for name in _LESIONS}
    shares = []
    for row in layout.iter_rows(folder, columns=columns):
        lungs = [obj["segmentation"] for obj in row["objects"] if obj["category"] in lung_ids]
        lesions = [obj["segmentation"] for obj in row["objects"] if obj["category"] in lesion_ids]
        found = {recipe.CLASSES[obj["category"]] for obj in row["objects"] if obj["category"] in lung_ids}
        if found != set(_LUNGS) or any(seg is None for seg in lungs + lesions):
            continue
        lung_rle = recipe.union_rle(lungs)
        lung_area = float(mask_utils.area(lung_rle))
        covered = 0.0
        if lesions:
            lesion_rle = recipe.union_rle(lesions)
            covered = float(mask_utils.area(mask_utils.merge([lesion_rle, lung_rle], intersect=True)))
        shares.append(
            {
                "image_id": row["image_id"],
                "file_name": row["file_name"],
                "share": covered / lung_area if lung_area else 0.0,
                **{column: row[column] for column, _ in recipe.SEVERITY_COLUMNS.values()},
            }
        )
    return shares


def severity_correlation(shares: list[dict[str, Any]]) -> SeverityCorrelation:
    """Spearman's rank correlation of the lesion share with `severity_geographic_extent`, over the scored images."""
    scored = [row for row in shares if row["severity_geographic_extent"] is not None]
    if len(scored) < 3:
        return SeverityCorrelation(n=len(scored), rho=None, p=None)
    result = scipy_stats.spearmanr(
        [row["share"] for row in scored], [row["severity_geographic_extent"] for row in scored]
    )
    return SeverityCorrelation(n=len(scored), rho=float(result.statistic), p=float(result.pvalue))


def render_severity_plot(folder: Path, shares: list[dict[str, Any]], correlation: SeverityCorrelation) -> str | None:
    """Write the scatter plot into `folder`; its repo path, or None when too few images are scored
    for a correlation."""
    scored = [row for row in shares if row["severity_geographic_extent"] is not None]
    if correlation["rho"] is None:
        return None
    # A Figure of its own, not pyplot: no global figure state or backend to pick, and the build
    # does not pay for importing pyplot (about 0.2 s of its 7).
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.5, 4), dpi=100)
    axes = figure.subplots()
    axes.scatter(
        [row["severity_geographic_extent"] for row in scored],
        [100 * row["share"] for row in scored],
        s=22,
        color="#0072b2",
        alpha=0.8,
    )
    axes.set_xlabel("geographic extent score (ieee8023, mean of 3 raters, 0-8)")
    axes.set_ylabel("lung fields covered by GGO or consolidation (%)")
    axes.set_title(f"{correlation['n']} scored images, Spearman rho = {correlation['rho']:.2f}", fontsize=10)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    target = folder / SEVERITY_PLOT_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    # No timestamp or software tag in the file: the same data gives the same bytes.
    figure.savefig(target, format="png", metadata={"Software": None})
    return SEVERITY_PLOT_PATH
