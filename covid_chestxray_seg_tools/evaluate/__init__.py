"""Score predicted masks against the ground truth: `covid-seg evaluate`.

Per image and class: Dice, IoU, NSD (tolerance in % of the image diagonal), clDice for the tube
and line classes, HD95 and ASSD in pixels and in % of the image diagonal (`metrics`). Per class:
the mean over the scored pairs with a 95 % bootstrap interval over patients (`bootstrap`), on a
split, under cross-validation (pooled, and each fold's mean) or on one fold (`protocol`);
optionally the paired difference against a second set of predictions (`scoring.compare`).

    metrics      one pair: the definitions, checked against MONAI and the clDice reference
    bootstrap    the patient bootstrap
    predictions  reading predicted masks (PNG folders, Parquet, save_to_disk folders)
    protocol     what is scored (split, cv, fold) and what a baseline may fit on
    scoring      scoring rows, summarising per class, comparing two sets of predictions
    report       Markdown tables and the per-image CSV

The card's "Evaluation protocol" says the same conventions in short.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from covid_chestxray_seg_tools.evaluate.bootstrap import BOOTSTRAP_SAMPLES, CONFIDENCE, SEED, bootstrap_interval
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError, ReportError
from covid_chestxray_seg_tools.evaluate.metrics import (
    DEFAULT_NSD_TOLERANCE_PCT,
    DISTANCE_METRICS,
    METRICS,
    OVERLAP_METRICS,
    TUBULAR_CLASSES,
    PairScores,
    centreline_dice,
    normalised_surface_dice,
    pair_scores,
    surface_distances,
    tolerance_pixels,
)
from covid_chestxray_seg_tools.evaluate.predictions import Targets, load_predictions, read_mask
from covid_chestxray_seg_tools.evaluate.protocol import (
    CV,
    TRUTH_COLUMNS,
    FitRound,
    Selection,
    fit_rounds,
    fit_splits,
    read_truth,
)
from covid_chestxray_seg_tools.evaluate.report import (
    format_comparison,
    format_markdown,
    format_results,
    write_per_image_csv,
)
from covid_chestxray_seg_tools.evaluate.scoring import compare, resolve_classes, score

__all__ = [
    "BOOTSTRAP_SAMPLES",
    "CONFIDENCE",
    "CV",
    "DEFAULT_NSD_TOLERANCE_PCT",
    "DISTANCE_METRICS",
    "METRICS",
    "OVERLAP_METRICS",
    "SEED",
    "TRUTH_COLUMNS",
    "TUBULAR_CLASSES",
    "EvaluateError",
    "FitRound",
    "PairScores",
    "ReportError",
    "Selection",
    "Targets",
    "bootstrap_interval",
    "centreline_dice",
    "compare",
    "evaluate",
    "fit_rounds",
    "fit_splits",
    "format_comparison",
    "format_markdown",
    "format_results",
    "load_predictions",
    "normalised_surface_dice",
    "pair_scores",
    "read_mask",
    "read_truth",
    "resolve_classes",
    "score",
    "surface_distances",
    "tolerance_pixels",
    "write_per_image_csv",
]


def evaluate(
    *,
    source: str,
    predictions: Path,
    split: str | None = None,
    fold: int | None = None,
    classes: Sequence[str] | None = None,
    compare_with: Path | None = None,
    tolerance_pct: float = DEFAULT_NSD_TOLERANCE_PCT,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = SEED,
) -> dict:
    """Score the predictions in a folder against a build or a Hub repo.

    Args:
        source: the ground truth: a built folder or a Hub dataset repo id.
        predictions: the predictions (see `predictions`).
        split: the split scored, or "cv" (default: test; with `fold`, cv).
        fold: one fold of the cross-validation.
        classes: class names or mask columns to score; None scores every class the
            predictions hold and lists the others as not predicted.
        compare_with: a second set of predictions B: the result gets the paired difference
            A - B under "comparison".
        tolerance_pct: NSD's tolerance in percent of the image diagonal.
        samples, seed: the bootstrap's.

    Returns:
        The `score` result (plus "comparison": `compare`'s result and the two folders).

    Raises:
        EvaluateError: bad options, predictions that cannot be scored.
        source.SourceError: the source cannot be read or lacks a split.
    """
    selection = Selection.parse(split=split, fold=fold)
    chosen = None if classes is None else resolve_classes(classes)
    if not tolerance_pct > 0:
        raise EvaluateError(f"--nsd-tolerance {tolerance_pct}: must be above 0 (percent of the image diagonal)")
    truth, targets = read_truth(source=source, selection=selection)
    predicted = load_predictions(path=predictions, targets=targets)
    other = None if compare_with is None else load_predictions(path=compare_with, targets=targets)
    options = {
        "split": selection.split,
        "fold": selection.fold,
        "classes": chosen,
        "tolerance_pct": tolerance_pct,
        "samples": samples,
        "seed": seed,
    }
    result = score(truth=truth, predictions=predicted, predicted=predicted.predicted_columns, **options)
    if other is not None:
        against = score(truth=truth, predictions=other, predicted=other.predicted_columns, **options)
        result["comparison"] = {
            "predictions": str(predictions),
            "against": str(compare_with),
            **compare(a=result, b=against, samples=samples, seed=seed),
        }
    return result
