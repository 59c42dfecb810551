"""The HTML report's sections about single images: the worst cases, the comparison of two sets
of predictions, and every image x class pair (`html_report` assembles the page).

Per-image values are rounded as the text tables round their means (`METRIC_DIGITS`); a pair
the protocol skips is listed with why (`SKIP_TEXT`), never drawn as a failure.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate import figures
from covid_chestxray_seg_tools.evaluate.markdown_html import Table, inline, markdown_blocks, table_html
from covid_chestxray_seg_tools.evaluate.metrics import TUBULAR_CLASSES
from covid_chestxray_seg_tools.evaluate.report import format_comparison
from covid_chestxray_seg_tools.evaluate.result import (
    ImageDice,
    Metric,
    MetricDifference,
    PairResult,
    ScoreResult,
    SkipReason,
)
from covid_chestxray_seg_tools.evaluate.worst_cases import Cases
from covid_chestxray_seg_tools.hub_folder import layout

__all__ = [
    "DIFFER_ROWS",
    "METRIC_DIGITS",
    "SKIP_TEXT",
    "comparison_section",
    "metric_label",
    "pairs_section",
    "worst_section",
]

# The per-image values' decimals: the text tables' (`report`), metric by metric.
METRIC_DIGITS: dict[Metric, int] = {
    "dice": 3,
    "iou": 3,
    "nsd": 3,
    "cldice": 3,
    "hd95": 1,
    "hd95_pct": 2,
    "assd": 1,
    "assd_pct": 2,
}
_METRIC_NAMES: dict[Metric, str] = {
    "dice": "Dice",
    "iou": "IoU",
    "nsd": "NSD",
    "cldice": "clDice",
    "hd95": "HD95 (px)",
    "hd95_pct": "HD95 (% diag.)",
    "assd": "ASSD (px)",
    "assd_pct": "ASSD (% diag.)",
}
# Why a pair is not scored, as the page says it (the protocol's `SkipReason`s).
SKIP_TEXT: dict[SkipReason, str] = {
    "null_truth": "the truth is annotated without a mask (null)",
    "flagged_missing": "the build flags the class as missing on this image",
    "both_empty": "prediction and truth are both empty",
}
# The comparison's table of the pairs where A's and B's Dice differ most.
DIFFER_ROWS = 12

_FOREST_METRICS: tuple[Metric, ...] = ("dice", "iou", "nsd", "cldice", "hd95_pct", "assd_pct")
_PER_IMAGE_METRICS: tuple[Metric, ...] = ("dice", "iou", "nsd", "cldice", "hd95", "hd95_pct", "assd", "assd_pct")

# A worst case whose masks cover no pixel at 256 px (a thin tube, a few-pixel probe).
_INVISIBLE = '<br><span class="muted">Neither mask covers a pixel at 256 px.</span>'


def metric_label(result: ScoreResult, metric: Metric) -> str:
    """A metric's name as the page heads it.

    Args:
        result: the result (its NSD tolerance names NSD).
        metric: the metric.

    Returns:
        "Dice", "NSD (1 % diag.)", "HD95 (px)", ...
    """
    if metric == "nsd":
        return f"NSD ({result['nsd_tolerance_pct']:g} % diag.)"
    return _METRIC_NAMES[metric]


def _swatch(outcome: str) -> str:
    colour = figures.OUTCOME_COLOURS[outcome]
    # Drawn as it shows on a mid-grey X-ray: the colour blended as the thumbnails blend it.
    blended = [round(figures.OUTCOME_ALPHA * c + (1 - figures.OUTCOME_ALPHA) * 128) for c in colour]
    return (
        f'<span><span class="swatch" style="background:rgb({blended[0]},{blended[1]},{blended[2]})"></span>'
        f"{html.escape(figures.OUTCOME_NAMES[outcome])}</span>"
    )


def _values(pair: PairResult, metrics: Iterable[Metric]) -> str:
    return ", ".join(f"{_METRIC_NAMES[m]} {_number(pair.get(m), m)}" for m in metrics if pair.get(m) is not None)


def _number(value: float | None, metric: Metric) -> str:
    return "–" if value is None else f"{value:.{METRIC_DIGITS[metric]}f}"


def worst_section(result: ScoreResult, cases: Cases, *, worst: int) -> str:
    """The worst cases: a legend of the outcome colours, then per class its thumbnails with
    each image's id, file name and metrics.

    Args:
        result: the result the cases were chosen from.
        cases: the cases drawn (`worst_cases.draw_cases`).
        worst: how many were asked for per class.

    Returns:
        HTML.
    """
    if cases.config == layout.SIZE_256_CONFIG:
        source = "the source's size-256 pictures and masks"
    else:
        source = "the full-size images and masks brought down by the size-256 rules"
    parts = [
        f"<p>For each scored class, the {worst} scored images with the lowest Dice (then NSD), drawn from {source} "
        "with the prediction brought to 256 px by the same rule, stretched back to the image's aspect ratio. Pairs "
        "the protocol skips are never shown. At this size a thin tube or line may cover no pixel.</p>",
        f'<div class="legend">{"".join(_swatch(outcome) for outcome in figures.OUTCOME_COLOURS)}</div>',
    ]
    for name, found in cases.by_class.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        if not found:
            parts.append('<p class="muted">No scored pair.</p>')
            continue
        items = []
        for case in found:
            image = case.image
            pair = image["classes"][name]
            file_name = cases.file_names.get(image["image_id"], "")
            metrics = [m for m in _PER_IMAGE_METRICS if m not in ("hd95", "assd")]
            alt = f"{name} on image {image['image_id']}: true positives, false positives, false negatives"
            items.append(
                f'<figure class="case" data-image="{image["image_id"]}" data-class="{html.escape(name)}">'
                f'<img alt="{html.escape(alt)}" src="{figures.data_uri(case.thumbnail)}">'
                f"<figcaption><strong>image {image['image_id']}</strong> · {html.escape(file_name)}<br>"
                f"{html.escape(_values(pair, metrics))}{'' if case.visible else _INVISIBLE}</figcaption></figure>"
            )
        parts.append(f'<div class="cases">{"".join(items)}</div>')
    return "".join(parts)


def comparison_section(result: ScoreResult, cases: Cases) -> str:
    """The comparison A - B: the headline's difference, the forest plot, the text output's
    table, and the image-class pairs where A's and B's Dice differ most.

    Args:
        result: a result with "comparison".
        cases: for the images' file names.

    Returns:
        HTML.
    """
    comparison = result["comparison"]
    blocks = markdown_blocks(format_comparison(comparison))
    paragraphs = [inline(block) for block in blocks if isinstance(block, str)]
    table = next(block for block in blocks if isinstance(block, Table))
    rows = []
    summary = comparison.get("summary")
    if summary is not None:
        headline = _differences({"dice": summary["dice"], "nsd": summary["nsd"]})
        rows.append(figures.ForestRow(label="Headline (macro mean)", differences=headline, bold=True))
    for name, metrics in comparison["classes"].items():
        rows.append(figures.ForestRow(label=name, differences=_differences(metrics)))
    labels: dict[str, str] = {metric: metric_label(result, metric) for metric in _FOREST_METRICS}
    forest = figures.forest_png(rows, labels=labels)
    return (
        "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs[:2])
        + '<img class="plot" id="forest" alt="forest plot of the paired differences A - B" '
        f'src="{figures.data_uri(forest)}">'
        '<p class="muted">Each difference A - B with its 95 % interval; filled vermillion diamonds where the '
        "interval excludes 0, open grey circles where it does not. Higher is better for Dice, IoU, NSD and clDice, "
        "lower for the distances.</p>"
        + table_html(table, ident="comparison")
        + "".join(f"<p>{paragraph}</p>" for paragraph in paragraphs[2:])
        + _differ(comparison.get("images", []), cases)
    )


def _differences(metrics: Mapping[Metric, MetricDifference]) -> dict[str, tuple[float, float, float, bool]]:
    found: dict[str, tuple[float, float, float, bool]] = {}
    for metric in _FOREST_METRICS:
        entry = metrics.get(metric)
        if entry and entry["difference"] is not None and entry["ci95"] is not None:
            found[metric] = (entry["difference"], entry["ci95"][0], entry["ci95"][1], bool(entry["excludes_zero"]))
    return found


def _differ(images: Sequence[ImageDice], cases: Cases) -> str:
    pairs = [
        (image["image_id"], name, dice_a, image["dice_b"][name])
        for image in images
        for name, dice_a in image["dice_a"].items()
        if dice_a != image["dice_b"][name]
    ]
    order = {name: index for index, name in enumerate(recipe.CLASSES)}
    pairs.sort(key=lambda pair: (-abs(pair[2] - pair[3]), pair[0], order[pair[1]]))
    head = "<h3>Where A and B differ most</h3>"
    if not pairs:
        return head + "<p>A and B give the same Dice on every image-class pair both score.</p>"
    rows = [
        [str(image_id), cases.file_names.get(image_id, ""), name, f"{a:.3f}", f"{b:.3f}", f"{a - b:+.3f}"]
        for image_id, name, a, b in pairs[:DIFFER_ROWS]
    ]
    table = Table(
        head=["Image", "File", "Class", "Dice A", "Dice B", "A - B"], rows=rows, numeric=frozenset({0, 3, 4, 5})
    )
    return (
        f"{head}<p>The {len(rows)} image-class pairs (of {len(pairs)} where they differ) with the largest "
        f"difference in Dice.</p>{table_html(table, ident='differ')}"
    )


def pairs_section(result: ScoreResult, cases: Cases) -> str:
    """Every image x class: per class (folded) one row per image, its metrics or why the
    protocol skips it.

    Args:
        result: the result.
        cases: for the images' file names.

    Returns:
        HTML.
    """
    parts = [
        "<p>Every image and class scored, and every pair the protocol skips with why. A distance is missing (–) "
        "where one of the two masks is empty; clDice is for the tubes and lines only.</p>"
    ]
    columns = dict(zip(recipe.CLASSES, recipe.MASK_COLUMNS))
    for name, entry in result["classes"].items():
        metrics = [m for m in _PER_IMAGE_METRICS if m != "cldice" or name in TUBULAR_CLASSES]
        head = ["Image", "File", "Patient", "Split", "Fold", *(metric_label(result, m) for m in metrics)]
        rows = []
        for image in result["images"]:
            pair = image["classes"][name]
            identity = [
                str(image["image_id"]),
                cases.file_names.get(image["image_id"], ""),
                "–" if image["patient_id"] is None else str(image["patient_id"]),
                image["split"],
                "–" if image["fold"] is None else str(image["fold"]),
            ]
            if "skipped" in pair:
                rows.append([*identity, f"skipped: {SKIP_TEXT[pair['skipped']]}"])
            else:
                rows.append([*identity, *(_number(pair.get(m), m) for m in metrics)])
        skipped = sum(entry["skipped"][reason] for reason in SKIP_TEXT)
        table = Table(head=head, rows=rows, numeric=frozenset({0, 2, 4, *range(5, 5 + len(metrics))}))
        parts.append(
            f"<details><summary>{html.escape(name)}: {entry['n']} scored, {skipped} skipped</summary>"
            f"{table_html(table, ident=f'pairs-{columns[name]}', span=len(head))}</details>"
        )
    return "".join(parts)
