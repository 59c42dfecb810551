"""The shape of a score result: what `score`, `compare` and `evaluate` return and `--json` writes.

A result stays a plain dict of JSON values (callers index it, and `json.dump` writes it as it
is); these TypedDicts say which keys it has and what each holds. Mappings are in class order
and metrics in `METRICS` order.
"""

from __future__ import annotations

from typing import Literal, TypedDict

__all__ = [
    "Bootstrap",
    "Burden",
    "ClassScores",
    "Comparison",
    "Counts",
    "Headline",
    "HeadlineDifference",
    "HeadlineMetric",
    "ImageDice",
    "ImageScores",
    "Metric",
    "MetricDifference",
    "MetricSummary",
    "PairResult",
    "ScoreResult",
    "SeverityAgreement",
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


class Burden(TypedDict):
    """An image's opacity burden: the share of its lung fields (left + right lung) that ground-glass
    opacity or consolidation covers, from the prediction's own masks and from the truth's (None
    where the lung fields are empty, or the truth lacks a lung)."""

    predicted: float | None
    truth: float | None


class _ImageScoresFields(TypedDict):
    image_id: int
    patient_id: int | None
    split: str
    fold: int | None
    classes: dict[str, PairResult]


class ImageScores(_ImageScoresFields, total=False):
    """One image: who and where it is, and a `PairResult` per class scored; where the truth has
    the columns, its opacity `burden` and its expert `severity` scores (column -> score, None
    where not scored)."""

    burden: Burden
    severity: dict[str, float | None]


class MetricDifference(TypedDict):
    """One metric of one class, A - B over the pairs both score (None and 0 when there is none):
    both means, the mean difference, its patient-bootstrap interval and whether it excludes 0."""

    n: int
    mean_a: float | None
    mean_b: float | None
    difference: float | None
    ci95: list[float] | None
    excludes_zero: bool | None


class HeadlineMetric(TypedDict):
    """The headline number of one metric: the macro mean over the headline classes of each
    class's mean, with a patient-bootstrap interval (resampled jointly for all classes)."""

    mean: float | None
    ci95: list[float] | None


class Headline(TypedDict):
    """The benchmark's one number (`--json`'s "summary"): the headline classes it averages, and
    their macro mean Dice and NSD."""

    classes: list[str]
    dice: HeadlineMetric
    nsd: HeadlineMetric


class HeadlineDifference(TypedDict):
    """The headline's paired difference A - B: per metric the macro mean over the headline
    classes of each class's mean difference, its interval and whether it excludes 0."""

    classes: list[str]
    dice: MetricDifference
    nsd: MetricDifference


class SeverityAgreement(TypedDict):
    """Spearman's rho between the opacity burden and one expert severity score over the `n`
    images that have the score and both burdens: from the predictions (`predicted`, with its
    patient-bootstrap `interval`) and from the truth's masks (`truth`, a reference); None
    where fewer than 3 images qualify or a burden does not vary."""

    predicted: float | None
    truth: float | None
    interval: list[float] | None
    n: int


class ImageDice(TypedDict):
    """One image both results score: per class where both have a Dice, A's and B's."""

    image_id: int
    dice_a: dict[str, float]
    dice_b: dict[str, float]


class _ComparisonFields(TypedDict):
    classes: dict[str, dict[Metric, MetricDifference]]
    not_compared: list[str]


class Comparison(_ComparisonFields, total=False):
    """The paired comparison of two score results (`compare`): per class scored in both, per
    metric; `not_compared` the classes scored in one only; `summary` the headline's difference
    (None when a headline class was not scored in both); `images` each image's paired Dice
    (where A and B differ most, the report shows). `evaluate` adds the two prediction folders,
    `predictions` (A) and `against` (B)."""

    summary: HeadlineDifference | None
    images: list[ImageDice]
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
    fold scored, the headline `summary` (None when a headline class was not scored), each
    scored class's benchmark tier, per class its `ClassScores`, the classes not predicted,
    NSD's tolerance, the counts, the bootstrap's settings, the agreement with the expert
    `severity` scores (where the truth has them) and per image its scores; with a second set
    of predictions also `comparison`."""

    summary: Headline | None
    tiers: dict[str, str]
    severity: dict[str, SeverityAgreement]
    comparison: Comparison
