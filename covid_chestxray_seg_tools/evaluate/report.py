"""The scores as people read them: Markdown tables (the terminal and the card) and a CSV file
with one row per image and class."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import covid_chestxray_seg as recipe
from covid_chestxray_seg_tools.evaluate.errors import ReportError
from covid_chestxray_seg_tools.evaluate.metrics import METRICS, TUBULAR_CLASSES
from covid_chestxray_seg_tools.evaluate.protocol import CV
from covid_chestxray_seg_tools.evaluate.result import Comparison, Metric, MetricDifference, ScoreResult

__all__ = [
    "CSV_COLUMNS",
    "format_comparison",
    "format_markdown",
    "format_results",
    "headline_text",
    "per_image_rows",
    "severity_table",
    "tiers_text",
    "write_atomically",
    "write_per_image_csv",
]

# metric -> (table header, decimals)
_HEADERS: dict[Metric, tuple[str, int]] = {
    "dice": ("Dice", 3),
    "iou": ("IoU", 3),
    "nsd": ("NSD", 3),
    "cldice": ("clDice", 3),
    "hd95": ("HD95 (px)", 1),
    "hd95_pct": ("HD95 (% diag.)", 2),
    "assd": ("ASSD (px)", 1),
    "assd_pct": ("ASSD (% diag.)", 2),
}
_OVERLAP_COLUMNS: tuple[Metric, ...] = ("dice", "iou", "nsd", "cldice")
_DISTANCE_COLUMNS: tuple[Metric, ...] = ("hd95", "hd95_pct", "assd", "assd_pct")
_FOLD_METRICS: tuple[Metric, ...] = ("dice", "nsd")
CSV_COLUMNS = ("split", "fold", "image_id", "patient_id", "class", "mask_column", "skipped", *METRICS)


def _applies(name: str, metric: str) -> bool:
    return metric != "cldice" or name in TUBULAR_CLASSES


def _cell(name: str, metric: Metric, mean: float | None, ci95: list[float] | None, *, signed: bool = False) -> str:
    if not _applies(name, metric):
        return "n/a"
    if mean is None or ci95 is None:
        return "–"
    digits = _HEADERS[metric][1]
    sign = "+" if signed else ""
    low, high = ci95
    return f"{mean:{sign}.{digits}f} [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"


def _title(result: ScoreResult) -> str:
    """What a result scored: "test", "cv" (all folds) or "cv fold 2"."""
    return result["split"] if result.get("fold") is None else f"{result['split']} fold {result['fold']}"


def _tables(results: Sequence[ScoreResult]) -> list[str]:
    """The overlap and distance tables; with several results a "scored on" column and the
    results' rows of each class side by side."""
    several = len(results) > 1
    names = [name for name in recipe.CLASSES if any(name in result["classes"] for result in results)]
    lines = []
    for columns, count in ((_OVERLAP_COLUMNS, "n"), (_DISTANCE_COLUMNS, "n (distances)")):
        head = ["Class", *(["scored on"] if several else []), count, *(_header(metric, results) for metric in columns)]
        lines += ["| " + " | ".join(head) + " |", "| " + " | ".join(_alignments(head, several)) + " |"]
        for name in names:
            for result in results:
                if name not in result["classes"]:
                    continue
                entry = result["classes"][name]
                n = entry["n"] if columns is _OVERLAP_COLUMNS else entry["hd95"]["n"]
                cells = [name, *([f"`{_title(result)}`"] if several else []), str(n)]
                cells += [_cell(name, metric, entry[metric]["mean"], entry[metric]["ci95"]) for metric in columns]
                lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _header(metric: Metric, results: Sequence[ScoreResult]) -> str:
    tolerances = {result["nsd_tolerance_pct"] for result in results}
    if metric == "nsd" and len(tolerances) == 1:
        return f"NSD ({tolerances.pop():g} % diag.)"
    return _HEADERS[metric][0]


def _alignments(head: Sequence[str], several: bool) -> list[str]:
    numeric = 2 if several else 1  # the n column
    return ["---:" if index == numeric else "---" for index in range(len(head))]


def _fold_table(result: ScoreResult) -> list[str]:
    """Each fold's mean Dice and NSD (cross-validation over all folds)."""
    counts = result["counts"]["fold_images"]
    head = ["Class", *(f"fold {k} ({counts[k]} images)" for k in range(recipe.FOLDS))]
    lines = [
        f"Mean of each fold, {' / '.join(_HEADERS[metric][0] for metric in _FOLD_METRICS)}:",
        "",
        "| " + " | ".join(head) + " |",
        "| " + " | ".join("---" for _ in head) + " |",
    ]
    for name, entry in result["classes"].items():
        cells = [name]
        for k in range(recipe.FOLDS):
            means = [entry[metric]["folds"][k] for metric in _FOLD_METRICS]
            cells.append("–" if means[0] is None else " / ".join(f"{mean:.3f}" for mean in means))
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def _what(result: ScoreResult) -> str:
    counts = result["counts"]
    if result["split"] == CV and result.get("fold") is None:
        scope = f"Cross-validation (`{CV}`, out-of-fold predictions, {recipe.FOLDS} folds)"
    elif result["split"] == CV:
        scope = f"Cross-validation fold {result['fold']} (`{CV}`)"
    else:
        scope = f"Split `{result['split']}`"
    return (
        f"{scope}: {counts['images']} images of {counts['patients']} patients, "
        f"{counts['scored']} of {counts['pairs']} image-class pairs scored."
    )


def _notes(result: ScoreResult) -> str:
    counts, bootstrap = result["counts"], result["bootstrap"]
    text = (
        f"Mean [{bootstrap['confidence']:.0%} interval: bootstrap over patients, {bootstrap['samples']} resamples, "
        f"seed {bootstrap['seed']}]; NSD within {result['nsd_tolerance_pct']:g} % of the image diagonal; "
        "clDice for the tubes and lines only. "
        f"Skipped: {counts['skipped_null_truth']} pairs whose ground truth is null (annotated without mask), "
        f"{counts['skipped_flagged_missing']} whose class the build flags as missing on the image, "
        f"{counts['skipped_both_empty']} where prediction and truth are both empty; "
        f"distances missing for {counts['distance_missing_one_side_empty']} pairs where one of the two is empty."
    )
    if result.get("not_predicted"):
        text += (
            f" Not predicted (no mask file in any image's predictions), so not scored: "
            f"{', '.join(result['not_predicted'])}."
        )
    return text


def headline_text(result: ScoreResult) -> str:
    """The headline number of a result in one line of Markdown (or why there is none)."""
    summary = result.get("summary")
    scope = _title(result)
    if summary is None:
        return (
            "No headline number: it needs every headline class scored "
            f"({', '.join(recipe.HEADLINE_CLASSES)}), and the predictions leave some out."
        )
    cells = []
    for metric in ("dice", "nsd"):
        entry = summary[metric]
        cells.append(f"{_HEADERS[metric][0]} {_cell('', metric, entry['mean'], entry['ci95'])}")
    secondary = "" if result["split"] == CV else " (cross-validation is the primary measure)"
    return (
        f"**Headline** `{scope}`{secondary}: {', '.join(cells)}: the macro mean over the "
        f"{len(summary['classes'])} headline classes with a patient-bootstrap 95 % interval."
    )


def tiers_text() -> str:
    """The benchmark's class tiers in one line of Markdown."""
    names = {
        "headline": f"headline (a mask on at least {recipe.HEADLINE_MIN_IMAGES} development images, averaged)",
        "device": "devices (reported per class)",
        "reported": "reported per class",
        "rare": f"rare (a mask on fewer than {recipe.RARE_BELOW} development images: reported, never averaged)",
    }
    parts = []
    for tier in recipe.CLASS_TIER_NAMES:
        members = [name for name in recipe.CLASSES if recipe.CLASS_TIERS[name] == tier]
        if members:
            parts.append(f"{names[tier]}: {', '.join(members)}")
    return "Class tiers: " + "; ".join(parts) + "."


def severity_table(result: ScoreResult) -> list[str]:
    """The agreement with the expert severity scores as Markdown lines; none without scores."""
    agreement = result.get("severity")
    if not agreement:
        return []
    lines = [
        "Agreement with the radiologists: Spearman's rho between the opacity burden (the share of the lung "
        "fields covered by ground-glass opacity or consolidation) and ieee8023's expert scores, from the "
        "predictions' own masks (patient-bootstrap 95 % interval) and, on the same images, from the truth's "
        "masks (a reference, not a ceiling):",
        "",
        "| score | n | predicted | truth's masks |",
        "| --- | ---: | --- | --- |",
    ]
    for column, entry in agreement.items():
        predicted = "–" if entry["predicted"] is None else f"{entry['predicted']:.2f}"
        if entry["interval"] is not None:
            predicted += f" [{entry['interval'][0]:.2f}, {entry['interval'][1]:.2f}]"
        truth = "–" if entry["truth"] is None else f"{entry['truth']:.2f}"
        lines.append(f"| `{column}` | {entry['n']} | {predicted} | {truth} |")
    return [*lines, ""]


def format_results(results: Sequence[ScoreResult]) -> str:
    """Several `score` results of one predictor (e.g. test and cross-validation): each one's
    headline number first, then one pair of tables with each class's rows side by side, each
    fold's means under cross-validation, a line on what each scored and skipped.

    Args:
        results: `score` results.

    Returns:
        Markdown.
    """
    lines = [*(headline_text(result) for result in results), "", tiers_text(), ""]
    lines += _tables(results)
    for result in results:
        if result["split"] == CV and result.get("fold") is None:
            lines += _fold_table(result)
    for result in results:
        lines += [f"{_what(result)} {_notes(result)}", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def format_markdown(result: ScoreResult) -> str:
    """A `score` result (with its comparison, if any) as Markdown: what `covid-seg evaluate` prints.

    Args:
        result: a `score` result, optionally with "comparison" (`compare`'s result plus
            "predictions" and "against", the two folders).

    Returns:
        Markdown.
    """
    text = format_results([result])
    severity = severity_table(result)
    if severity:
        text += "\n" + "\n".join(severity)
    if result.get("comparison"):
        text += "\n" + format_comparison(result["comparison"])
    return text


def format_comparison(comparison: Comparison) -> str:
    """A `compare` result as a Markdown table: per class and metric the mean of A - B and its interval.

    Args:
        comparison: `compare`'s result with "predictions" and "against" (A's and B's names).

    Returns:
        Markdown.
    """
    columns = (*_OVERLAP_COLUMNS, *_DISTANCE_COLUMNS)
    head = ["Class", "n", *(_HEADERS[metric][0] for metric in columns)]
    summary = comparison.get("summary")
    headline = []
    if summary is not None:
        cells = []
        headline_metrics: tuple[tuple[Metric, MetricDifference], ...] = (
            ("dice", summary["dice"]),
            ("nsd", summary["nsd"]),
        )
        for metric, difference in headline_metrics:
            value = _cell("", metric, difference["difference"], difference["ci95"], signed=True)
            cells.append(f"{_HEADERS[metric][0]} {value}" + (" *" if difference["excludes_zero"] else ""))
        headline = [f"**Headline difference** A - B: {', '.join(cells)}.", ""]
    lines = [
        *headline,
        f"Paired difference A - B (A: `{comparison['predictions']}`, B: `{comparison['against']}`), over the "
        "image-class pairs both score: mean [95 % interval: bootstrap over patients]; `*` where the interval "
        "excludes 0. Higher is better for Dice, IoU, NSD and clDice, lower for the distances.",
        "",
        "| " + " | ".join(head) + " |",
        "| --- | ---: |" + " --- |" * len(columns),
    ]
    for name, entry in comparison["classes"].items():
        cells = [name, str(entry["dice"]["n"])]
        for metric in columns:
            cell = _cell(name, metric, entry[metric]["difference"], entry[metric]["ci95"], signed=True)
            cells.append(cell + (" *" if entry[metric]["excludes_zero"] else ""))
        lines.append("| " + " | ".join(cells) + " |")
    if comparison["not_compared"]:
        lines += ["", f"Not compared (scored for only one of the two): {', '.join(comparison['not_compared'])}."]
    return "\n".join(lines) + "\n"


def per_image_rows(result: ScoreResult) -> list[dict[str, object]]:
    """One row per image and scored class: its metrics, or why the pair was skipped."""
    columns = dict(zip(recipe.CLASSES, recipe.MASK_COLUMNS))
    rows: list[dict[str, object]] = []
    for image in result["images"]:
        for name, scores in image["classes"].items():
            rows.append(
                {
                    "split": image["split"],
                    "fold": image["fold"],
                    "image_id": image["image_id"],
                    "patient_id": image["patient_id"],
                    "class": name,
                    "mask_column": columns[name],
                    "skipped": scores.get("skipped"),
                    **{metric: scores.get(metric) for metric in METRICS},
                }
            )
    return rows


def write_per_image_csv(result: ScoreResult, *, path: Path) -> int:
    """`--per-image FILE.csv`: `CSV_COLUMNS`, one row per image and scored class; an empty cell
    is a value that does not exist (a skipped pair, a distance with one mask empty, clDice of a
    class that is not a tube). Written whole or not at all.

    Args:
        result: a `score` result.
        path: the CSV file.

    Returns:
        The number of rows written.

    Raises:
        ReportError: the file cannot be written.
    """
    path = Path(path)
    rows = per_image_rows(result)
    with io.StringIO(newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
        write_atomically(path, handle.getvalue().encode("utf-8"), setting="per_image")
    return len(rows)


def write_atomically(path: Path, data: bytes, *, setting: str) -> None:
    """Write `data` to `path` whole or not at all: beside it under a hidden name, then renamed, so a
    reader (or a failure half-way) never sees half a file.

    Args:
        path: the file.
        data: its bytes.
        setting: the option that named the file, for the error.

    Raises:
        ReportError: the file cannot be written; nothing is left behind.
    """
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ReportError(
            f"cannot write the file ({error.strerror or error})", setting=setting, value=str(path)
        ) from None
