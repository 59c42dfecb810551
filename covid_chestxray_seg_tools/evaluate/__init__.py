"""Score predicted masks against the ground truth: `covid-seg evaluate`.

Per image and class: Dice, IoU, NSD (tolerance in % of the image diagonal), clDice for the tube
and line classes, HD95 and ASSD in pixels and in % of the image diagonal (`metrics`). Per class:
the mean over the scored pairs with a 95 % bootstrap interval over patients (`bootstrap`), on a
split, under cross-validation (pooled, and each fold's mean) or on one fold (`protocol`);
optionally the paired difference against a second set of predictions (`comparison.compare`).

    metrics      one pair: the definitions, checked against MONAI and the clDice reference
    bootstrap    the patient bootstrap
    predictions  reading predicted masks (PNG folders, Parquet, save_to_disk folders)
    nnunet       reading nnU-Net's region probabilities (.npz) of an nnU-Net export
    protocol     what is scored (split, cv, fold) and what a baseline may fit on
    scoring      scoring rows, summarising per class, comparing two sets of predictions
    result       the shape of a score result (TypedDicts: the result stays a dict of JSON values)
    report       Markdown tables and the per-image CSV
    html_report  the self-contained HTML report (markdown_html: its tables; figures: its
                 pictures; worst_cases: the worst images drawn from the source)

The card's "Evaluation protocol" says the same conventions in short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from covid_chestxray_seg_tools.evaluate.bootstrap import (
    BOOTSTRAP_SAMPLES,
    CONFIDENCE,
    SEED,
    bootstrap_interval,
    macro_bootstrap_interval,
)
from covid_chestxray_seg_tools.evaluate.comparison import compare
from covid_chestxray_seg_tools.evaluate.errors import EvaluateError, ReportError
from covid_chestxray_seg_tools.evaluate.html_report import DEFAULT_WORST, ReportOptions, render_report, write_report
from covid_chestxray_seg_tools.evaluate.loading import load_predictions
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
from covid_chestxray_seg_tools.evaluate.nnunet import NnUNetPredictions
from covid_chestxray_seg_tools.evaluate.predictions import (
    FULL_SCALE,
    FolderPredictions,
    Predictions,
    TablePredictions,
    Targets,
    read_mask,
)
from covid_chestxray_seg_tools.evaluate.protocol import (
    BENCHMARK,
    CV,
    OPTIONAL_TRUTH_COLUMNS,
    RULES,
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
    headline_text,
    severity_table,
    tiers_text,
    write_per_image_csv,
)
from covid_chestxray_seg_tools.evaluate.result import (
    Bootstrap,
    Burden,
    ClassScores,
    Comparison,
    Counts,
    Headline,
    HeadlineDifference,
    HeadlineMetric,
    ImageDice,
    ImageScores,
    Metric,
    MetricDifference,
    MetricSummary,
    PairResult,
    ScoreResult,
    SeverityAgreement,
    SkippedCounts,
    SkipReason,
)
from covid_chestxray_seg_tools.evaluate.scoring import (
    ScoreAccumulator,
    ScoringOptions,
    patient_group,
    resolve_classes,
    score,
    score_image,
)
from covid_chestxray_seg_tools.source import Source

__all__ = [
    "BENCHMARK",
    "BOOTSTRAP_SAMPLES",
    "CONFIDENCE",
    "CV",
    "DEFAULT_NSD_TOLERANCE_PCT",
    "DEFAULT_WORST",
    "DISTANCE_METRICS",
    "FULL_SCALE",
    "METRICS",
    "OPTIONAL_TRUTH_COLUMNS",
    "OVERLAP_METRICS",
    "RULES",
    "SEED",
    "TRUTH_COLUMNS",
    "TUBULAR_CLASSES",
    "Bootstrap",
    "Burden",
    "ClassScores",
    "Comparison",
    "Counts",
    "EvaluateError",
    "EvaluateRequest",
    "FitRound",
    "FolderPredictions",
    "Headline",
    "HeadlineDifference",
    "HeadlineMetric",
    "ImageDice",
    "ImageScores",
    "Metric",
    "MetricDifference",
    "MetricSummary",
    "PairResult",
    "PairScores",
    "Predictions",
    "ReportError",
    "ReportOptions",
    "ScoreAccumulator",
    "ScoreResult",
    "ScoringOptions",
    "Selection",
    "SeverityAgreement",
    "SkipReason",
    "SkippedCounts",
    "TablePredictions",
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
    "headline_text",
    "load_predictions",
    "macro_bootstrap_interval",
    "normalised_surface_dice",
    "pair_scores",
    "patient_group",
    "read_mask",
    "read_truth",
    "render_report",
    "resolve_classes",
    "score",
    "score_image",
    "severity_table",
    "surface_distances",
    "tiers_text",
    "tolerance_pixels",
    "write_per_image_csv",
    "write_report",
]


@dataclass(frozen=True)
class EvaluateRequest:
    """What an evaluation is asked for: built once by the command line (or a Python caller).

    Attributes:
        source: the ground truth: a built folder or a Hub dataset repo id (checked whole first,
            see `source.open_source`), or a `Source` opened at a revision.
        predictions: the predictions (see `predictions`).
        split: the split scored, or "cv" (default: test; with `fold`, cv).
        fold: one fold of the cross-validation.
        classes: class names or mask columns to score; None scores every class the
            predictions hold and lists the others as not predicted.
        compare: a second set of predictions B: the result gets the paired difference A - B.
        threshold: where probability maps (masks with more than two values) are cut, as a
            fraction of their format's full scale (see `read_mask`); None refuses them.
        scoring: NSD's tolerance and the bootstrap's settings.
    """

    source: str | Source
    predictions: Path
    split: str | None = None
    fold: int | None = None
    classes: tuple[str, ...] | None = None
    compare: Path | None = None
    threshold: float | None = None
    scoring: ScoringOptions = field(default_factory=ScoringOptions)


def evaluate(request: EvaluateRequest) -> ScoreResult:
    """Score the predictions in a folder against a build or a Hub repo.

    Args:
        request: what to score against what, and how.

    Returns:
        The `score` result (plus "comparison": `compare`'s result and the two folders).

    Raises:
        EvaluateError: bad options, predictions that cannot be scored.
        source.SourceError: the source cannot be read, is damaged or incomplete, or lacks a split.
    """
    selection = Selection.parse(split=request.split, fold=request.fold)
    chosen = None if request.classes is None else resolve_classes(request.classes)
    options = request.scoring
    if not options.nsd_tolerance > 0:
        raise EvaluateError(
            "must be above 0 (percent of the image diagonal)", setting="nsd_tolerance", value=options.nsd_tolerance
        )
    truth, targets = read_truth(source=request.source, selection=selection)
    predicted = load_predictions(path=request.predictions, targets=targets, threshold=request.threshold)
    other = None
    if request.compare is not None:
        other = load_predictions(path=request.compare, targets=targets, threshold=request.threshold, setting="compare")

    def scored(with_predictions: FolderPredictions | TablePredictions | NnUNetPredictions) -> ScoreResult:
        return score(
            truth=truth,
            predictions=with_predictions,
            split=selection.split,
            fold=selection.fold,
            classes=chosen,
            predicted=with_predictions.predicted_columns,
            options=options,
        )

    result = scored(predicted)
    if other is not None:
        # Everything `compare` gives (the headline's difference, each image's paired Dice too),
        # plus which folder is A and which B.
        comparison = compare(a=result, b=scored(other), options=options)
        comparison["predictions"] = str(request.predictions)
        comparison["against"] = str(request.compare)
        result["comparison"] = comparison
    return result
