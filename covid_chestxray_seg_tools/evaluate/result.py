"""The shape of a score result: what `score`, `compare` and `evaluate` return and `--json` writes.

A result stays a plain dict of JSON values (callers index it, and `json.dump` writes it as it
is); these TypedDicts say which keys it has and what each holds. Mappings are in class order
and metrics in `METRICS` order.
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "Bootstrap",
    "ClassScores",
    "Comparison",
    "Counts",
    "ImageScores",
    "Metric",
    "MetricDifference",
    "MetricSummary",
    "PairResult",
    "ScoreResult",
    "SkipReason",
    "SkippedCounts",
]

Metric = Literal["dice", "iou", "nsd", "cldice", "hd95", "assd", "hd95_pct", "assd_pct"]
# Why an image-class pair is not scored (see `scoring`).
SkipReason = Literal["null_truth", "flagged_missing", "both_empty"]


class _MetricSummaryFields(TypedDict):
    mean: float | None
    ci95: list[float] | None
    n: int


class MetricSummary(_MetricSummaryFields, total=False):
    """One metric of one class over the scored pairs: the mean, its patient-bootstrap interval
    ([low, high]) and the number of values (None and 0 when there is none); under
    cross-validation over all folds also `folds`, each fold's mean (None: no value in it)."""

    folds: list[float | None]


class SkippedCounts(TypedDict):
    """A class's pairs left out, by reason, and its pairs scored without distances (one mask empty)."""

    null_truth: int
    flagged_missing: int
    both_empty: int
    distance_one_side_empty: int


class ClassScores(TypedDict):
    """One class: the pairs scored (`n`), a summary per metric, and the pairs skipped."""

    n: int
    dice: MetricSummary
    iou: MetricSummary
    nsd: MetricSummary
    cldice: MetricSummary
    hd95: MetricSummary
    assd: MetricSummary
    hd95_pct: MetricSummary
    assd_pct: MetricSummary
    skipped: SkippedCounts


class _CountsFields(TypedDict):
    images: int
    patients: int
    pairs: int
    scored: int
    skipped_null_truth: int
    skipped_flagged_missing: int
    skipped_both_empty: int
    distance_missing_one_side_empty: int


class Counts(_CountsFields, total=False):
    """What was scored and skipped over all classes; under cross-validation over all folds also
    `fold_images`, the images of each fold."""

    fold_images: list[int]


class Bootstrap(TypedDict):
    """How the intervals were computed: `unit` "patient", `method` "percentile"."""

    unit: str
    samples: int
    seed: int
    confidence: float
    method: str


class PairResult(TypedDict, total=False):
    """One image and class: the metrics (`metrics.PairScores`, None where a metric does not
    exist), or only `skipped`, the `SkipReason`."""

    skipped: SkipReason
    dice: float | None
    iou: float | None
    nsd: float | None
    cldice: float | None
    hd95: float | None
    assd: float | None
    hd95_pct: float | None
    assd_pct: float | None


class ImageScores(TypedDict):
    """One image: who and where it is, and a `PairResult` per class scored."""

    image_id: int
    patient_id: int | None
    split: str
    fold: int | None
    classes: dict[str, PairResult]


class MetricDifference(TypedDict):
    """One metric of one class, A - B over the pairs both score (None and 0 when there is none):
    both means, the mean difference, its patient-bootstrap interval and whether it excludes 0."""

    n: int
    mean_a: float | None
    mean_b: float | None
    difference: float | None
    ci95: list[float] | None
    excludes_zero: bool | None


class _ComparisonFields(TypedDict):
    classes: dict[str, dict[Metric, MetricDifference]]
    not_compared: list[str]


class Comparison(_ComparisonFields, total=False):
    """The paired comparison of two score results (`compare`): per class scored in both, per
    metric; `not_compared` the classes scored in one only. `evaluate` adds the two prediction
    folders, `predictions` (A) and `against` (B)."""

    predictions: str
    against: str


class _ScoreResultFields(TypedDict):
    split: str
    fold: int | None
    classes: dict[str, ClassScores]
    not_predicted: list[str]
    nsd_tolerance_pct: float
    counts: Counts
    bootstrap: Bootstrap
    images: list[ImageScores]


class ScoreResult(_ScoreResultFields, total=False):
    """What `score` returns and `covid-seg evaluate --json` writes: the split (or "cv") and
    fold scored, per class its `ClassScores`, the classes not predicted, NSD's tolerance, the
    counts, the bootstrap's settings and per image its scores; with `evaluate(compare_with=...)`
    also `comparison`."""

    comparison: Comparison
